"""The signed-in user's own pages; every query and action is scoped to that user's rows.

    GET  /console/                          My keys, with each key's usage this month (or the sign-in page)
    GET  /console/keys/new                  the create-key form: the models the user may use now
    POST /console/keys                      create; the key is shown once, with snippets
    POST /console/keys/{id}/revoke          revoke one of the user's own keys
    GET  /console/subscriptions             the models, and the user's subscriptions
    POST /console/subscriptions             subscribe (pending when the model is restricted)
    POST /console/subscriptions/{id}/cancel cancel one of the user's own subscriptions
On a LiteMaaS database the pages only show, and the key / subscription routes answer 403
(litemaas_mode.py): LiteMaaS creates and changes those rows itself.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.console.access import key_access, subscription_records
from gateway.console.litemaas_mode import managed_in_litemaas, read_only
from gateway.console.security import check_csrf
from gateway.console.session import Viewer, render, require, viewer
from gateway.errors import GatewayError
from gateway.accounts.usage_report import key_totals
from gateway.accounts.validation import live_model_ids

NOT_YOURS = "No such item among yours."


async def _subscriptions(me: Viewer) -> list[Any]:
    return await me.pool.fetch(
        "SELECT id, model_id, status, expires_at, created_at FROM subscriptions WHERE user_id = $1 ORDER BY model_id",
        me.id,
    )


async def keys(request: Request) -> Response:
    me = await viewer(request)
    if me is None:
        return render(request, "signin.html", None)
    subscriptions = subscription_records(await _subscriptions(me))
    now = time.time()
    listed = [key_access(k, subscriptions, me.user["is_active"], now) for k in await me.accounts.list_keys(me.id)]
    listed.sort(key=lambda k: (k.status != "active", k.key["created_at"]), reverse=False)
    period = month_start(now)
    # usage_daily: the gateway's usage records; in LiteMaaS mode the pool's search_path finds them in
    # maas_gateway, where user and key ids are LiteMaaS's UUIDs as text.
    usage = await key_totals(me.pool, user_id=str(me.id), from_=period)
    return render(request, "keys.html", me, keys=listed, usage=usage, period=period)


def month_start(now: float) -> str:
    """The usage period My keys shows: this calendar month, in UTC (YYYY-MM-01)."""
    return datetime.fromtimestamp(now, timezone.utc).date().replace(day=1).isoformat()


async def new_key(request: Request) -> Response:
    me = await require(request)
    return render(request, "key_new.html", me, models=live_model_ids(await _subscriptions(me), time.time()), error=None)


def gateway_url(request: Request) -> str:
    public = request.app.state.config.console.public_url
    return public.rstrip("/") if public else f"{request.url.scheme}://{request.url.netloc}"


async def create_key(request: Request) -> Response:
    me = await require(request)
    form = await check_csrf(request)
    models = [m for m in form.getlist("models") if isinstance(m, str)]
    name = str(form.get("name") or "").strip()[:100] or None
    try:
        created = await me.accounts.create_key(user_id=me.id, models=models, name=name)
    except GatewayError as exc:
        return render(request, "key_new.html", me, status_code=exc.status,
                      models=live_model_ids(await _subscriptions(me), time.time()), error=exc.message)
    return render(request, "key_created.html", me, created=created, url=gateway_url(request))


async def _own(me: Viewer, table: str, item_id: str) -> None:
    owner = await me.pool.fetchval(f"SELECT user_id FROM {table} WHERE id = $1", item_id)
    if owner != me.id:
        raise HTTPException(404, NOT_YOURS)


async def revoke_key(request: Request) -> Response:
    me = await require(request)
    await check_csrf(request)
    key_id = request.path_params["key_id"]
    await _own(me, "api_keys", key_id)
    await me.accounts.revoke_key(key_id)
    return RedirectResponse(request.url_for("keys"), status_code=303)


async def subscriptions(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    me = await require(request)
    mine = await _subscriptions(me)
    held = {r["model_id"]: r for r in mine}
    models = [] if read_only(request) else await me.pool.fetch("SELECT * FROM models WHERE is_active ORDER BY id")
    offered = [{"id": m["id"], "restricted": _restricted(m)} for m in models
               if m["id"] not in held or held[m["id"]]["status"] == "cancelled"]
    return render(request, "subscriptions.html", me, status_code=status_code,
                  subscriptions=mine, offered=offered, error=error)


def _restricted(model: Any) -> bool:
    """models.restricted_access (LiteMaaS's column; migration 006 in the native schema)."""
    return bool(model["restricted_access"])


async def subscribe(request: Request) -> Response:
    me = await require(request)
    form = await check_csrf(request)
    model_id = str(form.get("model_id") or "")
    model = await me.pool.fetchrow("SELECT * FROM models WHERE id = $1 AND is_active", model_id)
    if model is None:
        raise HTTPException(404, "No such model.")
    status = "pending" if _restricted(model) else "active"
    existing = await me.pool.fetchrow(
        "SELECT id, status FROM subscriptions WHERE user_id = $1 AND model_id = $2", me.id, model_id)
    try:
        if existing is not None and existing["status"] == "cancelled":  # subscribing again
            await me.accounts.set_subscription_status(existing["id"], status)
        else:
            await me.accounts.create_subscription(user_id=me.id, model_id=model_id, status=status)
    except GatewayError as exc:
        return await subscriptions(request, exc.message, exc.status)
    return RedirectResponse(request.url_for("subscriptions"), status_code=303)


async def cancel(request: Request) -> Response:
    me = await require(request)
    await check_csrf(request)
    subscription_id = request.path_params["subscription_id"]
    await _own(me, "subscriptions", subscription_id)
    await me.accounts.set_subscription_status(subscription_id, "cancelled")
    return RedirectResponse(request.url_for("subscriptions"), status_code=303)


def routes() -> list[Route]:
    return [
        Route("/", keys, methods=["GET"], name="keys"),
        Route("/keys/new", managed_in_litemaas(new_key), methods=["GET"], name="new_key"),
        Route("/keys", managed_in_litemaas(create_key), methods=["POST"], name="create_key"),
        Route("/keys/{key_id}/revoke", managed_in_litemaas(revoke_key), methods=["POST"], name="revoke_key"),
        Route("/subscriptions", subscriptions, methods=["GET"], name="subscriptions"),
        Route("/subscriptions", managed_in_litemaas(subscribe), methods=["POST"], name="subscribe"),
        Route("/subscriptions/{subscription_id}/cancel", managed_in_litemaas(cancel), methods=["POST"], name="cancel"),
    ]
