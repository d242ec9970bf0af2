"""Sign-in and sign-out.

    GET  /console/login      redirect to the provider (authorization code, PKCE S256, nonce, state)
    GET  /console/callback   code -> tokens; Authlib verifies the ID token (signature against the
                             provider's JWKS, issuer, audience, expiry, nonce); the user is upserted
                             by (issuer, sub) and ensured in LiteLLM; the session remembers the user
    POST /console/logout     forgets the session; when the provider's discovery document has an
                             end_session_endpoint, the browser goes there (RP-initiated logout:
                             id_token_hint, client_id, post_logout_redirect_uri = the console), so
                             the provider's session ends too; else (OpenShift) sign-out is local

The provider's endpoints come from OIDC_ISSUER's discovery document, fetched on first use.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.config import Config
from gateway.console.security import check_csrf, csrf_token
from gateway.console.litemaas_mode import find_user, read_only
from gateway.console.users import EmailTaken, Identity, sign_in

log = logging.getLogger("maas_gateway.console")

# The ID token is kept in the (cookie) session for the sign-out's id_token_hint; one larger than
# this (a provider that puts many groups in it) is not, so the cookie stays under browsers' 4 KB:
# the sign-out then names the client only (client_id), which providers also accept.
ID_TOKEN_HINT_MAX = 2048


def oauth_client(config: Config) -> Any:
    console = config.console
    oauth = OAuth()
    return oauth.register(
        name="oidc",
        client_id=console.oidc_client_id,
        client_secret=console.oidc_client_secret,
        server_metadata_url=console.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": console.oidc_scopes, "code_challenge_method": "S256"},
    )


def console_url(request: Request, name: str, path: str) -> str:
    """The absolute URL of a console route, as the provider must know it (console.public_url)."""
    public = request.app.state.config.console.public_url
    if public:
        return public.rstrip("/") + "/console" + path
    return str(request.url_for(name))


def callback_url(request: Request) -> str:
    return console_url(request, "callback", "/callback")


async def login(request: Request) -> Response:
    return await request.app.state.oauth.authorize_redirect(request, callback_url(request))


def _groups(claims: dict, claim: str) -> tuple[str, ...]:
    value = claims.get(claim) or ()
    if isinstance(value, str):
        value = [value]
    return tuple(str(g) for g in value)


async def callback(request: Request) -> Response:
    config: Config = request.app.state.config
    try:
        token = await request.app.state.oauth.authorize_access_token(request)
    except OAuthError as exc:
        log.warning("console sign-in refused", extra={"fields": {"error": exc.error}})
        raise HTTPException(400, "Sign-in did not complete. Please sign in again.") from exc
    claims = dict(token.get("userinfo") or {})
    if not claims.get("sub"):
        raise HTTPException(400, "Sign-in did not complete: the provider sent no ID token. Please sign in again.")
    email = claims.get("email")
    if not email:
        raise HTTPException(400, "Your identity provider did not share an email address (scope `email`).")
    identity = Identity(
        provider=config.console.oidc_issuer.rstrip("/"),
        subject=str(claims["sub"]),
        email=str(email),
        username=str(claims.get("preferred_username") or claims.get("name") or email),
        groups=_groups(claims, config.console.oidc_groups_claim),
    )
    state = request.app.state.holder.state
    accounts = state.account_services.accounts
    if accounts is None:
        raise HTTPException(503, "The console needs the database: set DATABASE_URL.")
    try:
        if read_only(request):  # LiteMaaS made the user; its row is not the console's to write
            user = await find_user(state.pool, identity.subject)
        else:
            user = await sign_in(accounts, state.pool, identity)
    except EmailTaken:
        raise HTTPException(
            409, "Another account already uses this email address. Ask an administrator to link it.") from None
    request.session.clear()
    request.session["uid"] = str(user["id"])  # LiteMaaS's ids are UUIDs
    admin_group = config.console.oidc_admin_group
    request.session["admin"] = bool(admin_group and admin_group in identity.groups)
    id_token = token.get("id_token")
    if isinstance(id_token, str) and len(id_token) <= ID_TOKEN_HINT_MAX:
        request.session["id_token"] = id_token
    csrf_token(request)
    return RedirectResponse(request.url_for("keys"), status_code=303)


async def logout(request: Request) -> Response:
    await check_csrf(request)
    id_token = request.session.get("id_token")
    request.session.clear()
    return RedirectResponse(await _provider_logout(request, id_token) or request.url_for("keys"), status_code=303)


async def _provider_logout(request: Request, id_token: str | None) -> str | None:
    """The provider's end_session_endpoint URL for this sign-out, or None: it has none (OpenShift's
    OAuth server), or its discovery document cannot be read now (the sign-out stays local)."""
    client = request.app.state.oauth
    try:
        metadata = await client.load_server_metadata()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("console sign-out is local only: the provider's discovery document could not be read",
                    extra={"fields": {"error": type(exc).__name__}})
        return None
    if not metadata.get("end_session_endpoint"):
        return None
    logout_url = await client.create_logout_url(
        post_logout_redirect_uri=console_url(request, "keys", "/"), id_token_hint=id_token,
        client_id=client.client_id)
    return logout_url["url"]


def routes() -> list[Route]:
    return [
        Route("/login", login, methods=["GET"], name="login"),
        Route("/callback", callback, methods=["GET"], name="callback"),
        Route("/logout", logout, methods=["POST"], name="logout"),
    ]
