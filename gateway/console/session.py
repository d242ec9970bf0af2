"""Who is signed in: the user row behind the session, loaded on every request.

    viewer(request)   the Viewer, or None when nobody is signed in (or the user row is gone)
    require(request)  the Viewer; 303 to the sign-in page otherwise; admin=True: 403 for non-admins
    render(...)       a page with the viewer, the CSRF token and the setup notice in its context
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.accounts.service import Accounts
from gateway.console.security import csrf_token
from gateway.console.users import setup_pending


@dataclass(frozen=True)
class Viewer:
    user: Any  # the users row
    admin: bool
    accounts: Accounts
    pool: Any

    @property
    def id(self) -> str:
        return self.user["id"]


class SignInRequired(HTTPException):
    def __init__(self) -> None:
        super().__init__(303, headers={"location": "/console/"})


async def viewer(request: Request) -> Viewer | None:
    user_id = request.session.get("uid")
    if not user_id:
        return None
    state = request.app.state.holder.state
    accounts = state.account_services.accounts
    if accounts is None:
        raise HTTPException(503, "The console needs the database: set DATABASE_URL.")
    user = await state.pool.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
    if user is None:
        request.session.clear()
        return None
    return Viewer(user, bool(request.session.get("admin")), accounts, state.pool)


async def require(request: Request, *, admin: bool = False) -> Viewer:
    found = await viewer(request)
    if found is None:
        raise SignInRequired()
    if admin and not (found.admin and found.user["is_active"]):
        raise HTTPException(403, "This page is for administrators.")
    return found


def render(request: Request, name: str, me: Viewer | None, status_code: int = 200, **context: Any) -> Response:
    context.update(
        user=me.user if me else None,
        admin=bool(me and me.admin),
        csrf=csrf_token(request) if me else "",
        setup_pending=bool(me and setup_pending(me.accounts, me.user)),
        read_only=request.app.state.config.database.schema == "litemaas",  # see litemaas_mode.py
    )
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status_code)
