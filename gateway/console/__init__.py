"""The web console under /console: users sign in with OpenID Connect and see and manage
their own API keys and subscriptions; members of OIDC_ADMIN_GROUP also get the admin view.

    console_app(config, holder)   the Starlette app GatewayApp mounts at /console, or None
                                  when the console is disabled or OIDC is not configured
    auth.py        sign-in (Authlib: code + PKCE, nonce, ID token checked against the JWKS),
                   sign-out, the signed-in user of a request
    users.py       sign-in's upsert by (oauth_provider, oauth_id) and the LiteLLM sync
    access.py      per key and model: may it be called now? (policies.access, the proxy's code)
    pages.py       My keys (with usage this month), create / revoke key, My subscriptions
    admin.py       the admin view: pending subscriptions, users, models (restricted or not)
    security.py    CSP and other headers, CSRF tokens
    litemaas_mode.py   on a LiteMaaS database: sign-in finds LiteMaaS's user, pages only show
Every change goes through gateway/accounts/service.py, the admin API's service layer.

May import: policies, gateway.config, gateway.errors, gateway.ops, gateway.store, gateway.limits,
gateway.accounts, gateway.state.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway.config import Config
from gateway.errors import GatewayError

log = logging.getLogger("maas_gateway.console")

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "maas_console"
SESSION_SECONDS = 8 * 3600


def missing_settings(config: Config) -> list[str]:
    console = config.console
    wanted = {"OIDC_ISSUER": console.oidc_issuer, "OIDC_CLIENT_ID": console.oidc_client_id,
              "OIDC_CLIENT_SECRET": console.oidc_client_secret, "SESSION_SECRET": console.session_secret}
    return [name for name, value in wanted.items() if not value]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 303:  # SignInRequired
        return RedirectResponse(exc.headers["location"], status_code=303)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "message.html", {"title": "Not possible", "message": exc.detail, "user": None},
        status_code=exc.status_code,
    )


async def _gateway_error(request: Request, exc: Exception) -> Response:
    """An Accounts refusal (not found, conflict, LiteLLM still lacks the user), in its own words."""
    assert isinstance(exc, GatewayError)
    return request.app.state.templates.TemplateResponse(
        request, "message.html", {"title": "Not possible", "message": exc.message, "user": None},
        status_code=exc.status,
    )


def console_app(config: Config, holder: Any) -> Starlette | None:
    if not config.console.enabled:
        return None
    missing = missing_settings(config)
    if missing:
        log.info("console not served: set %s", ", ".join(missing))
        return None
    from gateway.console import admin, auth, pages
    from gateway.console.security import SecurityHeaders, origin

    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app = Starlette(
        routes=[*auth.routes(), *pages.routes(), *admin.routes(),
                Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static")],
        middleware=[
            # The provider's end_session_endpoint is on the issuer's origin (Keycloak, Entra ID, Okta,
            # Auth0, oidc-provider): sign-out's redirect there must pass the CSP's form-action.
            Middleware(SecurityHeaders, sign_out_origin=origin(config.console.oidc_issuer)),
            Middleware(SessionMiddleware, secret_key=config.console.session_secret, session_cookie=SESSION_COOKIE,
                       max_age=SESSION_SECONDS, path="/console", same_site="lax",
                       https_only=config.console.secure_cookie()),
        ],
        exception_handlers={HTTPException: _http_error, GatewayError: _gateway_error},
    )
    app.state.config = config
    app.state.holder = holder
    app.state.templates = templates
    app.state.oauth = auth.oauth_client(config)
    return app
