"""Every error the gateway answers with, and its OpenAI-shaped rendering.

    GatewayError                       status  code
    ├── AuthenticationError            401     MISSING_API_KEY | INVALID_API_KEY
    │                                          API_KEY_REVOKED | API_KEY_EXPIRED
    ├── AccessDeniedError              403     MODEL_ACCESS_DENIED | SUBSCRIPTION_INACTIVE
    │                                          USER_INACTIVE
    ├── InvalidRequestError            400     INVALID_REQUEST | MODEL_REQUIRED
    ├── RouteNotFoundError             404     ROUTE_NOT_FOUND | MODEL_NOT_FOUND
    ├── MethodNotAllowedError          405     METHOD_NOT_ALLOWED    (+ Allow)
    ├── RequestTooLargeError           413     REQUEST_TOO_LARGE
    ├── UnsupportedMediaTypeError      415     UNSUPPORTED_MEDIA_TYPE
    ├── UpstreamError
    │   ├── UpstreamUnavailableError   503     LITELLM_UNAVAILABLE   (+ Retry-After)
    │   ├── ModelUnavailableError      503     MODEL_UNAVAILABLE     (+ Retry-After)
    │   ├── ShuttingDownError          503     SHUTTING_DOWN         (+ Retry-After)
    │   ├── UpstreamTimeoutError       504     LITELLM_TIMEOUT
    │   └── LiteLLMError               5xx     LITELLM_ERROR         (LiteLLM's failure, its text logged)
    ├── RateLimitedError               429     RATE_LIMITED (+ Retry-After, at most 60)
    ├── QuotaExceededError             429     QUOTA_EXCEEDED (+ x-should-retry: false)
    ├── ServerBusyError                503     SERVER_BUSY (+ Retry-After): server.max_concurrency
    ├── RequestTimeoutError            408     REQUEST_TIMEOUT: body slower than server.body_read_timeout_seconds
    ├── StoreUnavailableError          503     KEY_STORE_UNAVAILABLE (+ Retry-After)
    ├── InternalError                  500     INTERNAL_ERROR (the message has the request id)
    ├── AdminError                     4xx     NOT_FOUND | CONFLICT | UNAUTHORIZED | ...
    └── LiteLLMSyncError               503     USER_NOT_FOUND_LITELLM (+ Retry-After)

Foreign exceptions (aiohttp, asyncpg, redis) are mapped to these at the boundary
where they are raised (`raise ... from exc`); handlers render them with `body()`.
Messages never contain key material.
"""

from __future__ import annotations

from typing import Iterable

import orjson

from policies.records import Code, Deny

# The words clients see, per code. Written for the person reading an SDK exception.
MESSAGES: dict[str, str] = {
    "MISSING_API_KEY": "No API key provided. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
    "INVALID_API_KEY": "Invalid API key. Check the key, or create a new one.",
    "API_KEY_REVOKED": "This API key has been revoked. Create a new key to continue.",
    "API_KEY_EXPIRED": "This API key has expired. Create a new key to continue.",
    "USER_INACTIVE": "Your account is deactivated. Contact your administrator.",
    "MODEL_ACCESS_DENIED": "Your API key does not have access to this model. Please check your subscription.",
    "SUBSCRIPTION_INACTIVE": "Your subscription to this model is not active. Please check your subscription.",
    "INVALID_REQUEST": "The request could not be understood.",
    "MODEL_REQUIRED": "The request must name a model, e.g. {\"model\": \"gpt-4o\"}.",
    "ROUTE_NOT_FOUND": "This route does not exist on this gateway.",
    "METHOD_NOT_ALLOWED": "This route does not accept this HTTP method.",
    "MODEL_NOT_FOUND": "The model does not exist or your API key does not have access to it.",
    "REQUEST_TOO_LARGE": "The request body is too large.",
    "UNSUPPORTED_MEDIA_TYPE": "This route does not read a body sent this way.",
    "LITELLM_UNAVAILABLE": "Service temporarily unavailable. Please try again later.",
    "LITELLM_TIMEOUT": "The model service did not answer in time. Please try again later.",
    "LITELLM_ERROR": "The model service failed to answer this request. Please try again later; if it keeps "
    "failing, give your administrator the request id.",
    "MODEL_UNAVAILABLE": "This model is temporarily unavailable. Please try again later.",
    "SHUTTING_DOWN": "This gateway instance is shutting down. Please try again.",
    "KEY_STORE_UNAVAILABLE": "API keys cannot be checked right now. Please try again later.",
    "USER_NOT_FOUND_LITELLM": "Account setup in progress. Please try again in a moment.",
    "RATE_LIMITED": "Too many requests. Please wait before retrying.",
    "QUOTA_EXCEEDED": "Your usage quota is used up. Contact your administrator to raise it, or wait for it to reset.",
    "SERVER_BUSY": "The gateway is serving as many requests as it can. Please try again in a moment.",
    "REQUEST_TIMEOUT": "The request was not received in time.",
    "INTERNAL_ERROR": "The gateway failed to answer this request. Please try again; if it persists, report the request id.",
}

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    408: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


class GatewayError(Exception):
    status = 500
    code = "INTERNAL_ERROR"
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()  # e.g. x-ratelimit-* on a limit's refusal

    def __init__(
        self,
        code: str | None = None,
        detail: str | None = None,
        *,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.detail = detail
        self.param = param
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def message(self) -> str:
        base = MESSAGES.get(self.code, "Internal error.")
        return f"{base} ({self.detail})" if self.detail else base

    def payload(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": _TYPES.get(self.status, "api_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return orjson.dumps(self.payload())

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"application/json")]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        headers.extend(self.extra_headers)
        return headers


class AuthenticationError(GatewayError):
    status = 401
    code = "INVALID_API_KEY"


class AccessDeniedError(GatewayError):
    status = 403
    code = "MODEL_ACCESS_DENIED"


class InvalidRequestError(GatewayError):
    status = 400
    code = "INVALID_REQUEST"


class RouteNotFoundError(GatewayError):
    status = 404
    code = "ROUTE_NOT_FOUND"


class MethodNotAllowedError(GatewayError):
    """Names the route's methods in the detail and in `Allow` (RFC 9110: a 405 must send it)."""

    status = 405
    code = "METHOD_NOT_ALLOWED"

    def __init__(self, allow: Iterable[str]) -> None:
        self.allow = ", ".join(sorted(allow))
        super().__init__(detail=f"use {self.allow}")

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [*super().headers(), (b"allow", self.allow.encode())]


class RequestTooLargeError(GatewayError):
    status = 413
    code = "REQUEST_TOO_LARGE"


class UnsupportedMediaTypeError(GatewayError):
    """A body whose Content-Type (or Content-Encoding) the route does not read the way LiteLLM would;
    the detail says what to send."""

    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class UpstreamError(GatewayError):
    status = 502
    code = "LITELLM_UNAVAILABLE"


class UpstreamUnavailableError(UpstreamError):
    status = 503
    code = "LITELLM_UNAVAILABLE"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "LITELLM_TIMEOUT"


class LiteLLMError(UpstreamError):
    """LiteLLM answered with a failure the user cannot act on (a 5xx, a refused service key):
    the status is LiteLLM's 5xx (502 for the rest); LiteLLM's own text goes to the log only."""

    def __init__(self, status: int, detail: str | None = None) -> None:
        self.status = status
        super().__init__("LITELLM_ERROR", detail)


class ModelUnavailableError(UpstreamError):
    status = 503
    code = "MODEL_UNAVAILABLE"


class ShuttingDownError(UpstreamError):
    status = 503
    code = "SHUTTING_DOWN"


class RateLimitedError(GatewayError):
    status = 429
    code = "RATE_LIMITED"


class QuotaExceededError(GatewayError):
    """A period quota or budget is spent: retrying before it resets cannot help (the OpenAI SDK
    honours x-should-retry)."""

    status = 429
    code = "QUOTA_EXCEEDED"
    extra_headers = ((b"x-should-retry", b"false"),)


class ServerBusyError(GatewayError):
    status = 503
    code = "SERVER_BUSY"


class RequestTimeoutError(GatewayError):
    status = 408
    code = "REQUEST_TIMEOUT"


class StoreUnavailableError(GatewayError):
    status = 503
    code = "KEY_STORE_UNAVAILABLE"


class LiteLLMSyncError(GatewayError):
    status = 503
    code = "USER_NOT_FOUND_LITELLM"


class InternalError(GatewayError):
    """Anything unexpected: the message carries the request id (gateway/serving/failures.py)."""


class AdminError(GatewayError):
    """Admin API errors; the status is given per instance."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None) -> None:
        self.status = status
        self._message = message
        super().__init__(code, param=param)

    @property
    def message(self) -> str:
        return self._message


_DENIAL_CLASSES: dict[Code, type[GatewayError]] = {
    Code.MISSING_API_KEY: AuthenticationError,
    Code.INVALID_API_KEY: AuthenticationError,
    Code.API_KEY_REVOKED: AuthenticationError,
    Code.API_KEY_EXPIRED: AuthenticationError,
    Code.USER_INACTIVE: AccessDeniedError,
    Code.MODEL_ACCESS_DENIED: AccessDeniedError,
    Code.SUBSCRIPTION_INACTIVE: AccessDeniedError,
    Code.INVALID_REQUEST: InvalidRequestError,
    Code.MODEL_REQUIRED: InvalidRequestError,
}


def from_denial(deny: Deny) -> GatewayError:
    """The error a client sees for a policy denial."""
    cls = _DENIAL_CLASSES[deny.code]
    detail = deny.detail if deny.code in (Code.INVALID_REQUEST,) else None
    if deny.code in (Code.MODEL_ACCESS_DENIED, Code.SUBSCRIPTION_INACTIVE) and deny.model:
        detail = f"model: {deny.model}"
    param = "model" if deny.code in (Code.MODEL_ACCESS_DENIED, Code.SUBSCRIPTION_INACTIVE, Code.MODEL_REQUIRED) else None
    return cls(deny.code.value, detail, param=param)
