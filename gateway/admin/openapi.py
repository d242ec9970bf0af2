"""The admin API's OpenAPI 3.1 document, made from handlers.ENDPOINTS and schema.Body.

Served at /admin/v1/openapi.json (no token needed, but only while the API is enabled).
"""

from __future__ import annotations

import functools
from typing import Any

from gateway.admin.handlers import ENDPOINTS, PREFIX
from gateway.admin.schema import STATUSES

_TIME = {"type": ["string", "null"], "format": "date-time"}
_ID = {"type": "string"}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties, "required": required or list(properties)}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


_INT = {"type": ["integer", "null"]}
_NUMBER = {"type": ["number", "null"]}
_KEY = {
    "id": _ID, "user_id": _ID, "name": {"type": ["string", "null"]},
    "key_prefix": {"type": "string", "description": "The first 7 characters, for display."},
    "models": {"type": "array", "items": {"type": "string"}},
    "expires_at": _TIME, "is_active": {"type": "boolean"}, "revoked_at": _TIME, "last_used_at": _TIME,
    "sync_status": {"type": "string", "enum": ["pending", "synced", "error"]},
    "status": {"type": "string", "enum": ["active", "revoked", "inactive", "expired"]},
    "rpm_limit": _INT, "tpm_limit": _INT, "max_parallel_requests": _INT,
    "created_at": _TIME,
}
_SUBSCRIPTION = {
    "id": _ID, "user_id": _ID, "model_id": _ID, "status": {"type": "string", "enum": list(STATUSES)},
    "expires_at": _TIME, "quota_requests": _INT, "quota_tokens": _INT, "max_budget": _NUMBER, "reset_at": _TIME,
    "used_requests": {"type": "integer"}, "used_tokens": {"type": "integer"},
    "created_at": _TIME, "updated_at": _TIME,
}

RESPONSES: dict[str, dict] = {
    "User": _obj({
        "id": _ID, "username": {"type": "string"}, "email": {"type": "string"}, "is_active": {"type": "boolean"},
        "max_budget": {"type": ["number", "null"]}, "tpm_limit": {"type": ["integer", "null"]},
        "rpm_limit": {"type": ["integer", "null"]}, "max_parallel_requests": _INT,
        "sync_status": {"type": "string", "enum": ["pending", "synced", "error"],
                        "description": "Whether LiteLLM has the user; error heals in the background."},
        "sync_error": {"type": ["string", "null"]}, "last_synced_at": _TIME, "created_at": _TIME, "updated_at": _TIME,
    }),
    "Model": _obj({"id": _ID, "name": {"type": ["string", "null"]}, "provider": {"type": ["string", "null"]},
                   "is_active": {"type": "boolean"}, "input_cost_per_token": _NUMBER,
                   "output_cost_per_token": _NUMBER, "created_at": _TIME}),
    "ModelList": _obj({"data": {"type": "array", "items": _ref("Model")}}),
    "Subscription": _obj(_SUBSCRIPTION),
    "ApiKey": _obj(_KEY),
    "ApiKeyCreated": _obj({**_KEY, "key": {"type": "string", "description": "The full key: shown once, never again."}}),
    "ApiKeyList": _obj({"data": {"type": "array", "items": _ref("ApiKey")}}),
    "SubscriptionCreated": _obj(
        {"subscription": _ref("Subscription"), "created": {"type": "boolean"}, "api_key": _ref("ApiKeyCreated")},
        ["subscription", "created"],
    ),
    "Usage": _obj({
        "day": {"type": "string", "format": "date"}, "key_id": _ID, "user_id": _ID, "model_id": _ID,
        "requests": {"type": "integer"}, "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
        "spend": {"type": "number", "description": "USD: tokens x the model's cost per token."},
    }),
    "UsageList": _obj({"data": {"type": "array", "items": _ref("Usage")},
                       "next_cursor": {"type": ["string", "null"], "description": "Pass as `cursor` for the next page."}}),
    "Offender": _obj({
        "kind": {"type": "string", "enum": ["key", "address"]},
        "id": {"type": "string", "description": "The key's id, or the client address."},
        "refused": {"type": "integer", "description": "Model access refusals (key) or failed authentications (address)."},
    }),
    "OffenderList": _obj({"data": {"type": "array", "items": _ref("Offender")}, "next_cursor": {"type": "null"}}),
    "Error": _obj({"error": _obj({
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": "string"},
    })}),
}

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
                "description": "OK", "content": {"application/json": {"schema": _ref(endpoint.response)}}
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
            "required": True, "content": {"application/json": {"schema": _ref(endpoint.body.name)}}
        }
    return operation


@functools.cache
def document() -> dict:
    paths: dict[str, dict] = {}
    schemas = dict(RESPONSES)
    for endpoint in ENDPOINTS:
        paths.setdefault(PREFIX + endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
        if endpoint.body is not None:
            schemas[endpoint.body.name] = endpoint.body.json_schema()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "maas-gateway admin API",
            "version": "1",
            "description": "Users, models, subscriptions and API keys, kept in step with LiteLLM.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                               "description": "GATEWAY_ADMIN_TOKEN"}},
        },
        "security": [{"adminToken": []}],
    }
