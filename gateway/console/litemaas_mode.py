"""The console on a LiteMaaS database (database.schema: litemaas): it shows, never writes.

LiteMaaS creates users, subscriptions and keys itself (and their LiteLLM copies), and the gateway
never writes a row of LiteMaaS's tables (gateway/store/litemaas.py). So here:

    read_only(request)      True in LiteMaaS mode: the pages hide every create / revoke / subscribe /
                            cancel / approve / deny / (de)activate / model control
    managed_in_litemaas     wraps a write route: in LiteMaaS mode it answers 403 MANAGED, after the
                            same sign-in (and, for a POST, CSRF) checks the route itself makes
    find_user(pool, sub)    sign-in's lookup: the LiteMaaS user with this identity's `sub` (LiteMaaS
                            created it at its own sign-in); nothing is inserted or updated
"""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.console.security import check_csrf
from gateway.console.session import require

MANAGED = ("This console runs on a LiteMaaS database: keys, subscriptions, users and models are created, "
           "changed and approved in LiteMaaS, and this console only shows them.")
NO_ACCOUNT = "You have no LiteMaaS account yet: sign in to LiteMaaS first, it creates your account."
AMBIGUOUS = "More than one LiteMaaS account has this identity. Ask an administrator."


def read_only(request: Request) -> bool:
    return request.app.state.config.database.schema == "litemaas"


def managed_in_litemaas(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        if not read_only(request):
            return await handler(request)
        await require(request)
        if request.method == "POST":
            await check_csrf(request)
        raise HTTPException(403, MANAGED)

    return route


async def find_user(pool: Any, subject: str) -> Any:
    """LiteMaaS keys a user by (oauth_provider, oauth_id), its provider a name of its own ("openshift",
    "oidc"): the `sub` alone finds the row, and two rows with it are refused rather than guessed."""
    rows = await pool.fetch("SELECT * FROM users WHERE oauth_id = $1 LIMIT 2", subject)
    if not rows:
        raise HTTPException(403, NO_ACCOUNT)
    if len(rows) > 1:
        raise HTTPException(409, AMBIGUOUS)
    return rows[0]
