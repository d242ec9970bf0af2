"""The console's browser-facing protections.

    SecurityHeaders   ASGI middleware: Content-Security-Policy (only our own scripts and
                      styles, forms post only to us, never framed), nosniff, no-store, referrer.
                      `sign_out_origin`: the identity provider's origin, which form-action must
                      allow too: sign-out posts to us and we redirect it to the provider's
                      end_session_endpoint, and browsers hold a form's redirects to form-action
    csrf_token()      the session's synchronizer token, put in every form
    check_csrf()      every POST must carry it (403 otherwise)

The session itself is Starlette's SessionMiddleware: a cookie signed with SESSION_SECRET,
HttpOnly, SameSite=Lax (the provider's redirect back is a top-level GET), Path=/console.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request

def csp(sign_out_origin: str = "") -> str:
    form_action = f"'self' {sign_out_origin}".strip()
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'")


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


class SecurityHeaders:
    def __init__(self, app: Any, sign_out_origin: str = "") -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp(sign_out_origin).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"cache-control", b"no-store"),
        ]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        headers = self.headers
        names = {name for name, _ in headers}

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [h for h in message.get("headers", []) if h[0].lower() not in names] + headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request) -> Any:
    """The submitted form, once its CSRF token matched the session's."""
    form = await request.form()
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "The form expired or did not come from this console. Reload the page and try again.")
    return form
