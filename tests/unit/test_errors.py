"""gateway/errors.py: policy denials -> status, code, message; the whole OpenAI error body."""

from __future__ import annotations

import orjson
import pytest

from gateway import errors
from gateway.errors import (
    MESSAGES,
    AccessDeniedError,
    AdminError,
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    LiteLLMSyncError,
    MethodNotAllowedError,
    RequestTooLargeError,
    RouteNotFoundError,
    StoreUnavailableError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    from_denial,
)
from policies.records import Code, Deny

pytestmark = pytest.mark.unit

JSON = (b"content-type", b"application/json")
ACCESS = "Your API key does not have access to this model. Please check your subscription."
SUBSCRIPTION = "Your subscription to this model is not active. Please check your subscription."

INTERNAL = "The gateway failed to answer this request. Please try again; if it persists, report the request id."


def body(message: str, type_: str, code: str, param=None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@pytest.mark.parametrize(
    ("deny", "cls", "status", "expected"),
    [
        (Deny(Code.MISSING_API_KEY), AuthenticationError, 401,
         body(MESSAGES["MISSING_API_KEY"], "authentication_error", "MISSING_API_KEY")),
        (Deny(Code.INVALID_API_KEY), AuthenticationError, 401,
         body("Invalid API key. Check the key, or create a new one.", "authentication_error", "INVALID_API_KEY")),
        (Deny(Code.API_KEY_REVOKED), AuthenticationError, 401,
         body("This API key has been revoked. Create a new key to continue.", "authentication_error", "API_KEY_REVOKED")),
        (Deny(Code.API_KEY_EXPIRED, detail="ignored"), AuthenticationError, 401,
         body("This API key has expired. Create a new key to continue.", "authentication_error", "API_KEY_EXPIRED")),
        (Deny(Code.USER_INACTIVE), AccessDeniedError, 403,
         body("Your account is deactivated. Contact your administrator.", "permission_denied_error", "USER_INACTIVE")),
        (Deny(Code.MODEL_ACCESS_DENIED, "gpt-4o"), AccessDeniedError, 403,
         body(f"{ACCESS} (model: gpt-4o)", "permission_denied_error", "MODEL_ACCESS_DENIED", "model")),
        (Deny(Code.MODEL_ACCESS_DENIED, "gpt-4o", "no subscription"), AccessDeniedError, 403,
         body(f"{ACCESS} (model: gpt-4o)", "permission_denied_error", "MODEL_ACCESS_DENIED", "model")),
        (Deny(Code.MODEL_ACCESS_DENIED), AccessDeniedError, 403,
         body(ACCESS, "permission_denied_error", "MODEL_ACCESS_DENIED", "model")),
        (Deny(Code.SUBSCRIPTION_INACTIVE, "openai/o1", "cancelled"), AccessDeniedError, 403,
         body(f"{SUBSCRIPTION} (model: openai/o1)", "permission_denied_error", "SUBSCRIPTION_INACTIVE", "model")),
        (Deny(Code.INVALID_REQUEST, detail="conflicting model names: 'a' in the body, 'b' in the query"), InvalidRequestError, 400,
         body("The request could not be understood. (conflicting model names: 'a' in the body, 'b' in the query)",
              "invalid_request_error", "INVALID_REQUEST")),
        (Deny(Code.INVALID_REQUEST), InvalidRequestError, 400,
         body("The request could not be understood.", "invalid_request_error", "INVALID_REQUEST")),
        (Deny(Code.MODEL_REQUIRED), InvalidRequestError, 400,
         body('The request must name a model, e.g. {"model": "gpt-4o"}.', "invalid_request_error", "MODEL_REQUIRED", "model")),
    ],
    ids=lambda v: v.code.value + (f"-{v.model}" if v.model else "") + (f"-{v.detail}"[:20] if v.detail else "") if isinstance(v, Deny) else None,
)
def test_from_denial(deny: Deny, cls: type, status: int, expected: dict) -> None:
    error = from_denial(deny)
    assert type(error) is cls
    assert error.status == status
    assert error.code == deny.code.value
    assert error.payload() == expected
    assert orjson.loads(error.body()) == expected
    assert error.headers() == [JSON]
    assert error.retry_after is None
    assert str(error) == expected["error"]["message"]


def test_every_code_has_a_denial_class_and_message() -> None:
    for code in Code:
        error = from_denial(Deny(code))
        assert error.code == code.value
        assert error.message.startswith(MESSAGES[code.value])


def test_contract_messages() -> None:
    assert MESSAGES["MODEL_ACCESS_DENIED"] == ACCESS
    assert MESSAGES["LITELLM_UNAVAILABLE"] == "Service temporarily unavailable. Please try again later."
    assert MESSAGES["USER_NOT_FOUND_LITELLM"] == "Account setup in progress. Please try again in a moment."


@pytest.mark.parametrize(
    ("error", "status", "expected", "headers"),
    [
        (UpstreamUnavailableError(retry_after=30), 503,
         body("Service temporarily unavailable. Please try again later.", "service_unavailable_error", "LITELLM_UNAVAILABLE"),
         [JSON, (b"retry-after", b"30")]),
        (UpstreamUnavailableError(retry_after=0), 503,
         body("Service temporarily unavailable. Please try again later.", "service_unavailable_error", "LITELLM_UNAVAILABLE"),
         [JSON, (b"retry-after", b"0")]),
        (UpstreamUnavailableError(), 503,
         body("Service temporarily unavailable. Please try again later.", "service_unavailable_error", "LITELLM_UNAVAILABLE"),
         [JSON]),
        (UpstreamTimeoutError(), 504,
         body("The model service did not answer in time. Please try again later.", "timeout_error", "LITELLM_TIMEOUT"),
         [JSON]),
        (StoreUnavailableError(retry_after=5), 503,
         body("API keys cannot be checked right now. Please try again later.", "service_unavailable_error", "KEY_STORE_UNAVAILABLE"),
         [JSON, (b"retry-after", b"5")]),
        (LiteLLMSyncError(retry_after=2), 503,
         body("Account setup in progress. Please try again in a moment.", "service_unavailable_error", "USER_NOT_FOUND_LITELLM"),
         [JSON, (b"retry-after", b"2")]),
        (RouteNotFoundError(), 404,
         body("This route does not exist on this gateway.", "not_found_error", "ROUTE_NOT_FOUND"), [JSON]),
        (RouteNotFoundError("MODEL_NOT_FOUND"), 404,
         body("The model does not exist or your API key does not have access to it.", "not_found_error", "MODEL_NOT_FOUND"), [JSON]),
        (MethodNotAllowedError(("POST",)), 405,
         body("This route does not accept this HTTP method. (use POST)", "invalid_request_error", "METHOD_NOT_ALLOWED"),
         [JSON, (b"allow", b"POST")]),
        (MethodNotAllowedError(("POST", "GET")), 405,
         body("This route does not accept this HTTP method. (use GET, POST)", "invalid_request_error", "METHOD_NOT_ALLOWED"),
         [JSON, (b"allow", b"GET, POST")]),
        (RequestTooLargeError(), 413,
         body("The request body is too large.", "invalid_request_error", "REQUEST_TOO_LARGE"), [JSON]),
        (InvalidRequestError(detail="x", param="model"), 400,
         body("The request could not be understood. (x)", "invalid_request_error", "INVALID_REQUEST", "model"), [JSON]),
        (AuthenticationError("MISSING_API_KEY"), 401,
         body(MESSAGES["MISSING_API_KEY"], "authentication_error", "MISSING_API_KEY"), [JSON]),
        (AdminError(409, "CONFLICT", "user exists", param="email"), 409,
         body("user exists", "conflict_error", "CONFLICT", "email"), [JSON]),
        (AdminError(422, "INVALID", "bad"), 422, body("bad", "invalid_request_error", "INVALID"), [JSON]),
        (AdminError(418, "TEAPOT", "short and stout"), 418, body("short and stout", "api_error", "TEAPOT"), [JSON]),
        (GatewayError(), 500, body(INTERNAL, "api_error", "INTERNAL_ERROR"), [JSON]),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, GatewayError) else None,
)
def test_error_bodies(error: GatewayError, status: int, expected: dict, headers) -> None:
    assert error.status == status
    assert error.payload() == expected
    assert orjson.loads(error.body()) == expected
    assert error.headers() == headers


def test_error_tree() -> None:
    assert issubclass(UpstreamUnavailableError, errors.UpstreamError)
    assert issubclass(UpstreamTimeoutError, errors.UpstreamError)
    for cls in (AuthenticationError, AccessDeniedError, InvalidRequestError, RouteNotFoundError, MethodNotAllowedError,
                RequestTooLargeError, errors.UpstreamError, StoreUnavailableError, AdminError, LiteLLMSyncError):
        assert issubclass(cls, GatewayError)
    for cls in (AuthenticationError, AccessDeniedError, InvalidRequestError, RouteNotFoundError, MethodNotAllowedError,
                RequestTooLargeError, UpstreamUnavailableError, UpstreamTimeoutError, StoreUnavailableError, LiteLLMSyncError):
        assert cls.code in MESSAGES
