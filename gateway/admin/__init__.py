"""The admin API under /admin/v1: users, models, subscriptions and API keys.

    admin_routes() -> the Starlette routes GatewayApp mounts (handlers.ENDPOINTS plus
                      /admin/v1/openapi.json)
    gateway/admin/handlers.py   authentication, endpoints, the endpoint table
    gateway/admin/schema.py     request bodies as pydantic models: strict validation, clear 422 messages
    gateway/admin/responses.py  the answers as pydantic models (for the document)
    gateway/admin/openapi.py    the OpenAPI document, made from both
    gateway/admin/cli.py        the same operations as `maas-gateway` subcommands (click)
The work itself is done by gateway/accounts/service.py, shared with the CLI.

May import: policies, gateway.config, gateway.errors, gateway.ops, gateway.store, gateway.limits,
gateway.accounts, gateway.state.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.handlers import ENDPOINTS, PREFIX, authenticate, guarded, json_response
from gateway.admin.openapi import document
from gateway.errors import AdminError


async def _openapi(request: Request) -> Response:
    try:
        authenticate(request)
    except AdminError as exc:
        if exc.status != 401:  # the document needs no token, but a disabled API shows nothing
            raise
    return json_response(document())


def admin_routes() -> list[Route]:
    routes = [Route(PREFIX + "/openapi.json", _openapi, methods=["GET"])]
    routes += [Route(PREFIX + e.path, guarded(e.handler), methods=[e.method]) for e in ENDPOINTS]
    return routes
