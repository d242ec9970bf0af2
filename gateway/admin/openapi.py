"""The admin API's OpenAPI 3.1 document, made from handlers.ENDPOINTS and the pydantic models
of its bodies (gateway/admin/schema.py) and answers (gateway/admin/responses.py): their JSON
Schemas (pydantic's, draft 2020-12, which OpenAPI 3.1 uses) become the document's components.

Served at /admin/v1/openapi.json (no token needed, but only while the API is enabled).
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic.json_schema import models_json_schema

from gateway.admin.handlers import ENDPOINTS, PREFIX
from gateway.admin.responses import ANSWERS
from gateway.admin.schema import BODIES

_REF = "#/components/schemas/{model}"
_ID = {"type": "string"}


def _ref(name: str) -> dict:
    return {"$ref": _REF.format(model=name)}


_ERROR_WORDS = {
    400: "Not JSON", 401: "Missing or wrong admin token", 404: "Not found, or the admin API is disabled",
    403: "A write on a LiteMaaS database (MANAGED_BY_LITEMAAS): LiteMaaS manages these",
    409: "Conflicts with the current state", 422: "Invalid body: the field is named in error.param",
    503: "LiteLLM could not create the user yet (USER_NOT_FOUND_LITELLM) or is unavailable",
}


def _operation(endpoint: Any) -> dict:
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": endpoint.handler.__name__,
        "responses": {
            str(endpoint.status): {
                "description": "OK", "content": {"application/json": {"schema": _ref(endpoint.response.__name__)}}
            },
            **{
                str(code): {"description": _ERROR_WORDS[code], "content": {"application/json": {"schema": _ref("Error")}}}
                for code in sorted({*endpoint.errors, *((403,) if endpoint.method != "GET" else ())})
            },
        },
    }
    parameters = [{"name": "id", "in": "path", "required": True, "schema": _ID}] if "{id}" in endpoint.path else []
    parameters += [{"name": name, "in": "query", "required": False, "schema": _ID} for name in endpoint.query]
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": _ref(endpoint.body.__name__)}}
        }
    return operation


@functools.cache
def document() -> dict:
    paths: dict[str, dict] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(PREFIX + endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    _, schemas = models_json_schema([(m, "validation") for m in (*BODIES, *ANSWERS)], ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "maas-gateway admin API",
            "version": "1",
            "description": "Users, models, subscriptions and API keys, kept in step with LiteLLM.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                               "description": "GATEWAY_ADMIN_TOKEN"}},
        },
        "security": [{"adminToken": []}],
    }
