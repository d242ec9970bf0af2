"""The admin API's endpoints: authenticate, validate, call Accounts, answer JSON.

In LiteMaaS mode the API is read-only: every write answers 403 MANAGED_BY_LITEMAAS.
Every request needs `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`, compared in constant
time. Without a configured token the whole API answers 404 ADMIN_API_DISABLED: disabled,
never open. Errors are GatewayErrors, rendered in the OpenAI shape by the app's handler.
ENDPOINTS is the single table the routes and the OpenAPI document are both made from.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.store import litemaas
from gateway.accounts.service import Accounts
from gateway.admin import responses, schema
from gateway.admin.responses import Answer
from gateway.admin.schema import Body
from gateway.errors import AdminError, GatewayError
from gateway.ops.offenders import HOURS_KEPT
from gateway.accounts.usage_report import page_limit
from gateway.accounts.validation import invalid

log = logging.getLogger("maas_gateway.admin")

PREFIX = "/admin/v1"
MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[Request, Accounts], Awaitable[Response]]



def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def authenticate(request: Request) -> None:
    token = request.app.state.holder.state.config.admin.token
    if not token:
        raise AdminError(404, "ADMIN_API_DISABLED", "The admin API is disabled: set GATEWAY_ADMIN_TOKEN to enable it.")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise AdminError(401, "UNAUTHORIZED", "Missing or wrong admin token: send 'Authorization: Bearer <GATEWAY_ADMIN_TOKEN>'.")


async def read_body(request: Request, body: type[Body]) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise AdminError(413, "REQUEST_TOO_LARGE", f"Admin request bodies are limited to {MAX_BODY_BYTES} bytes.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AdminError(400, "INVALID_REQUEST", "The request body is not valid JSON.") from None
    return body.parse(data)


def query(request: Request, *allowed: str) -> dict[str, str]:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise invalid(f"{unknown[0]}: unknown query parameter (known: {', '.join(allowed) or 'none'}).", unknown[0])
    return {k: request.query_params[k] for k in allowed if request.query_params.get(k)}


# -- endpoints ---------------------------------------------------------------


async def create_user(request: Request, accounts: Accounts) -> Response:
    return json_response(await accounts.create_user(**await read_body(request, schema.UserCreate)), 201)


async def get_user(request: Request, accounts: Accounts) -> Response:
    return json_response(await accounts.get_user(request.path_params["id"]))


async def update_user(request: Request, accounts: Accounts) -> Response:
    body = await read_body(request, schema.UserUpdate)
    return json_response(await accounts.update_user(request.path_params["id"], **body))


async def create_model(request: Request, accounts: Accounts) -> Response:
    return json_response(await accounts.create_model(**await read_body(request, schema.ModelCreate)), 201)


async def list_models(request: Request, accounts: Accounts) -> Response:
    query(request)
    return json_response({"data": await accounts.list_models()})


async def create_subscription(request: Request, accounts: Accounts) -> Response:
    answer = await accounts.create_subscription(**await read_body(request, schema.SubscriptionCreate))
    return json_response(answer, 201 if answer["created"] else 200)


async def update_subscription(request: Request, accounts: Accounts) -> Response:
    body = await read_body(request, schema.SubscriptionUpdate)
    return json_response(await accounts.update_subscription(request.path_params["id"], **body))


async def create_key(request: Request, accounts: Accounts) -> Response:
    return json_response(await accounts.create_key(**await read_body(request, schema.KeyCreate)), 201)


async def list_keys(request: Request, accounts: Accounts) -> Response:
    return json_response({"data": await accounts.list_keys(**query(request, "user_id"))})


async def update_key(request: Request, accounts: Accounts) -> Response:
    body = await read_body(request, schema.KeyUpdate)
    return json_response(await accounts.update_key(request.path_params["id"], **body))


async def revoke_key(request: Request, accounts: Accounts) -> Response:
    return json_response(await accounts.revoke_key(request.path_params["id"]))


async def list_usage(request: Request, accounts: Accounts) -> Response:
    params = query(request, "user_id", "key_id", "model", "from", "to", "limit", "cursor")
    limit = page_limit(params.pop("limit", None))
    if "from" in params:
        params["from_"] = params.pop("from")
    return json_response(await accounts.usage(limit=limit, **params))


async def list_offenders(request: Request, accounts: Accounts) -> Response:
    params = query(request, "hours", "limit")
    hours = params.get("hours", "24")
    if not hours.isdigit() or not 1 <= int(hours) <= HOURS_KEPT:
        raise invalid(f"hours: expected an integer from 1 to {HOURS_KEPT}, got {hours[:20]!r}.", "hours")
    offenders = request.app.state.holder.state.offenders
    return json_response({"data": await offenders.top(int(hours), page_limit(params.get("limit"))), "next_cursor": None})


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # below PREFIX
    handler: Handler
    summary: str
    status: int  # the success status
    response: type[Answer]  # what it answers on success
    body: type[Body] | None = None
    query: tuple[str, ...] = ()
    errors: tuple[int, ...] = (401, 404, 422)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/users", create_user, "Create a user and ensure it in LiteLLM", 201, responses.User,
             schema.UserCreate, errors=(400, 401, 409, 422)),
    Endpoint("GET", "/users/{id}", get_user, "Get a user, with its LiteLLM sync status", 200, responses.User,
             errors=(401, 404)),
    Endpoint("PATCH", "/users/{id}", update_user, "Activate or deactivate a user, or change its limits", 200,
             responses.User, schema.UserUpdate),
    Endpoint("POST", "/models", create_model, "Add a model (its LiteLLM name)", 201, responses.Model, schema.ModelCreate,
             errors=(400, 401, 409, 422)),
    Endpoint("GET", "/models", list_models, "List models", 200, responses.ModelList, errors=(401,)),
    Endpoint("POST", "/subscriptions", create_subscription,
             "Subscribe a user to a model, optionally with an API key (200 with created: false when it exists)",
             201, responses.SubscriptionCreated, schema.SubscriptionCreate, errors=(400, 401, 404, 409, 422, 503)),
    Endpoint("PATCH", "/subscriptions/{id}", update_subscription, "Change a subscription's status or quotas", 200,
             responses.Subscription, schema.SubscriptionUpdate),
    Endpoint("POST", "/keys", create_key, "Create an API key; the key is in this answer only", 201,
             responses.ApiKeyCreated, schema.KeyCreate, errors=(400, 401, 404, 409, 422, 503)),
    Endpoint("GET", "/keys", list_keys, "List API keys (never the key itself)", 200, responses.ApiKeyList,
             query=("user_id",)),
    Endpoint("PATCH", "/keys/{id}", update_key, "Change an API key's rate limits", 200, responses.ApiKey,
             schema.KeyUpdate),
    Endpoint("GET", "/usage", list_usage, "Requests, tokens and spend per key, user, model and UTC day", 200,
             responses.UsageList, query=("user_id", "key_id", "model", "from", "to", "limit", "cursor"),
             errors=(401, 422)),
    Endpoint("GET", "/offenders", list_offenders,
             "Keys refused most for model access and client addresses with most failed authentications", 200,
             responses.OffenderList, query=("hours", "limit"), errors=(401, 422)),
    Endpoint("DELETE", "/keys/{id}", revoke_key, "Revoke an API key (refused at once on every instance)", 200,
             responses.ApiKey, errors=(401, 404)),
)


def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authentication, the Accounts service from app state, and no unhandled 500 without a log line."""

    async def endpoint(request: Request) -> Response:
        authenticate(request)
        if request.method != "GET" and request.app.state.holder.state.config.database.schema == "litemaas":
            raise litemaas.read_only_error()
        accounts = request.app.state.holder.state.account_services.accounts
        if accounts is None:
            raise AdminError(503, "ADMIN_UNAVAILABLE", "The admin API needs a database: set DATABASE_URL.")
        try:
            return await handler(request, accounts)
        except GatewayError:
            raise
        except Exception as exc:
            log.exception("admin request failed", extra={"fields": {"path": request.url.path}})
            raise AdminError(500, "INTERNAL_ERROR", "Internal error; see the gateway's log.") from exc

    return endpoint
