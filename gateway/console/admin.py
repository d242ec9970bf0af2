"""The admin view, for members of OIDC_ADMIN_GROUP (the groups claim of their ID token).

    GET  /console/admin                                   pending subscriptions; users (search, pages)
    POST /console/admin/subscriptions/{id}/approve|deny   pending -> active | denied
    POST /console/admin/users/{id}/activate|deactivate
    POST /console/admin/models                            add a model (its LiteLLM name)
    POST /console/admin/models/access                     mark a model restricted (model_id, restricted=1|0)
On a LiteMaaS database the view only shows, and every POST answers 403 (litemaas_mode.py).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.console.litemaas_mode import managed_in_litemaas
from gateway.console.security import check_csrf
from gateway.console.session import render, require
from gateway.errors import GatewayError

PAGE_SIZE = 25


async def overview(request: Request, error: str | None = None) -> Response:
    me = await require(request, admin=True)
    query = request.query_params.get("q", "").strip()[:100]
    raw_page = request.query_params.get("page", "1")
    page = max(int(raw_page), 1) if raw_page.isdigit() else 1
    pending = await me.pool.fetch(
        """SELECT s.id, s.model_id, s.created_at, u.email FROM subscriptions s JOIN users u ON u.id = s.user_id
           WHERE s.status = 'pending' ORDER BY s.created_at LIMIT 200""")
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    users = await me.pool.fetch(
        """SELECT id, email, username, is_active, sync_status, last_login_at FROM users
           WHERE email ILIKE $1 OR username ILIKE $1 ORDER BY email LIMIT $2 OFFSET $3""",
        pattern, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    models = await me.pool.fetch("SELECT id, restricted_access FROM models ORDER BY id")
    return render(request, "admin.html", me, pending=pending, users=users[:PAGE_SIZE], query=query, page=page,
                  more=len(users) > PAGE_SIZE, models=models, error=error)


async def decide(request: Request) -> Response:
    me = await require(request, admin=True)
    await check_csrf(request)
    status = {"approve": "active", "deny": "denied"}.get(request.path_params["action"])
    if status is None:
        raise HTTPException(404, "No such action.")
    await me.accounts.set_subscription_status(request.path_params["subscription_id"], status)
    return RedirectResponse(request.url_for("admin"), status_code=303)


async def set_active(request: Request) -> Response:
    me = await require(request, admin=True)
    await check_csrf(request)
    if request.path_params["action"] not in ("activate", "deactivate"):
        raise HTTPException(404, "No such action.")
    active = request.path_params["action"] == "activate"
    await me.accounts.set_user_active(request.path_params["user_id"], active)
    return RedirectResponse(request.url_for("admin"), status_code=303)


async def add_model(request: Request) -> Response:
    me = await require(request, admin=True)
    form = await check_csrf(request)
    try:
        await me.accounts.create_model(id=str(form.get("model_id") or "").strip())
    except GatewayError as exc:
        response = await overview(request, exc.message)
        response.status_code = exc.status
        return response
    return RedirectResponse(request.url_for("admin"), status_code=303)


async def set_restricted(request: Request) -> Response:
    me = await require(request, admin=True)
    form = await check_csrf(request)
    await me.accounts.set_model_restricted(str(form.get("model_id") or ""), form.get("restricted") == "1")
    return RedirectResponse(request.url_for("admin"), status_code=303)


def routes() -> list[Route]:
    return [
        Route("/admin", overview, methods=["GET"], name="admin"),
        Route("/admin/models", managed_in_litemaas(add_model), methods=["POST"], name="add_model"),
        Route("/admin/models/access", managed_in_litemaas(set_restricted), methods=["POST"], name="set_restricted"),
        Route("/admin/subscriptions/{subscription_id}/{action:str}", managed_in_litemaas(decide), methods=["POST"]),
        Route("/admin/users/{user_id}/{action:str}", managed_in_litemaas(set_active), methods=["POST"]),
    ]
