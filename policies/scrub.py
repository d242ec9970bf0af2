"""What a client may read of LiteLLM's error answers: pure text work, no I/O.

LiteLLM's error text is written for its operator: it names the backend (URLs, hosts and
ports), can carry key fragments and tracebacks, and ends with its own bookkeeping
("LiteLLM Retried: 2 times", "model group 'x' failed with the error above. No fallback
was attempted."). Two decisions here, both on LiteLLM's status:

    relayed(status, body)   an error the user can act on (RELAYED: a bad parameter,
                            context length, content policy, an unknown model, a
                            provider's 429): its OpenAI-shaped payload, message cleaned
                            by clean(); None for every other status, which the gateway
                            answers with its own error and the request id instead
    event_status(payload)   the status a mid-stream SSE error event stands for (its
                            `code`), so that stream errors follow the same rule
    relayed_failure(error)  the same rule for the `error` of a Responses API stream's
                            `response.failed` event, by its code

clean() keeps the words that say what to fix ("Missing required parameter: 'messages'.")
and removes, in this order: a traceback, LiteLLM's debug lines and fallback/retry
bookkeeping, the exception-class prefixes ("litellm.BadRequestError: BadRequestError:
OpenAIException - "), then URLs, host:port pairs, IP addresses, file paths and
key-shaped strings, each replaced by REDACTED.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import orjson

# LiteLLM statuses whose message is the user's to act on; the rest become the gateway's error.
# 401/403: the gateway already authenticated and authorised this user: LiteLLM refusing is the
# platform's fault (its service key, a provider key, drift), not something the user can fix.
# 408: LiteLLM's timeout of its backend. 5xx: LiteLLM's or the provider's failure.
RELAYED = frozenset({400, 404, 409, 413, 415, 422, 429})

REDACTED = "[redacted]"
MAX_MESSAGE = 2000  # characters of a cleaned message; LiteLLM's own are far shorter

_GENERIC = {
    400: "The model service rejected the request.",
    404: "The model service does not know what the request names.",
    429: "The model's provider is rate limiting requests. Please retry later.",
}
_TYPES = {400: "invalid_request_error", 404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
          415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}
_WORD = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# 1. Everything from a traceback, or from LiteLLM's debug lines, on (they end its messages).
_TAIL = re.compile(
    r"Traceback \(most recent call last\):.*"
    r"|\n\s*(?:Model|API Base|Messages|model_group|deployment|vertex_project|vertex_location|"
    r"Received Model Group|Available Model Group Fallbacks)\s*[:=].*",
    re.DOTALL,
)
# 2. LiteLLM's router bookkeeping, to the end of the message, and its retry counts.
_BOOKKEEPING = (
    re.compile(r"\s*LiteLLM: model group .*", re.DOTALL),  # "... failed with the error above. No fallback ..."
    re.compile(r"\s*Received Model Group=.*", re.DOTALL),  # LiteLLM < 1.50
    re.compile(r"\s*Available Model Group Fallbacks=.*", re.DOTALL),
    re.compile(r"[.,]?\s*pre-call-checks=.*", re.DOTALL),  # "No deployments available ... cooldown_list=[...]"
    re.compile(r",?\s*LiteLLM (?:Retried: \d+ times|Max Retries: \d+)"),
    re.compile(r"\s*Handle with `litellm\.\w+`\.?"),
    re.compile(r"\s*Debug this by setting `--debug`.*", re.DOTALL),
)
# 3. Exception-class prefixes, chained: "litellm.X: X: ProviderException - ", "APITimeoutError - ".
_PREFIXES = re.compile(
    r"(?:\blitellm\.[A-Za-z_]\w*\s*:\s*"
    r"|\b(?:[A-Z]\w*?(?:Error|Exception)|Timeout|APIError)(?:\s*:\s*|\s+-\s+)"
    r"|\b[A-Z][A-Za-z]*Exception\s*:\s*Context Window Error\s+-\s+)+"
)
# The openai SDK's text for a provider's answer: "Error code: 400 - {'error': {...}}".
_PROVIDER_BODY = re.compile(r"Error code: (\d{3}) - (\{.*\})\s*$", re.DOTALL)
# 4. Internals and secrets. Key-shaped strings before the rest: a URL may carry a key.
_SECRETS = re.compile(
    r"-----BEGIN[A-Z \-]*-----[\s\S]*?(?:-----END[A-Z \-]*-----|$)"
    r"|\b(?:sk|rk|pk)-[A-Za-z0-9_\-*.]{2,}[A-Za-z0-9_\-*]"  # OpenAI/Anthropic/virtual keys, masked ones too
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_\-]{20,}|\bya29\.[\w.~+/\-]+"
    r"|\b(?:hf|gsk|xai|r8|pplx|nvapi|dapi|ghp|glpat)[_\-][A-Za-z0-9_\-]{8,}"
    r"|\beyJ[\w\-]{8,}\.[\w\-]+\.[\w\-]*"  # JWTs
    r"|\b(?:Bearer|Basic)\s+[\w.~+/\-=]{6,}"
    r"|(?<=[?&])[\w\-]+=[^\s&'\"]+",  # every query parameter of a URL's query string
    re.IGNORECASE,
)
_NAMED_SECRET = re.compile(
    r"\b((?:x-)?api[_\-]?key|access[_\-]?token|auth[_\-]?token|token|password|passwd|secret|client_secret|"
    r"authorization)(['\"]?\s*[:=]\s*['\"]?)[^\s,'\"})\]]+",
    re.IGNORECASE,
)
_INTERNALS = re.compile(
    r"\b[a-z][a-z0-9+.\-]*://[^\s'\"<>`)\]}]+"  # URLs
    r"|\[[0-9A-Fa-f:]{2,}\](?::\d{1,5})?"  # [IPv6]:port
    r"|\('[^'\s]{1,255}',\s*\d{1,5}\)"  # a socket address's repr: ('10.0.0.7', 8000)
    r"|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"  # IPv4[:port]
    r"|\b(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z][A-Za-z0-9\-]*:\d{2,5}\b"  # host:port
    r"|\b(?:[A-Za-z0-9\-]+\.)+(?:internal|local|localdomain|corp|lan|intra|private|svc|cluster)\b"  # internal names
    r"|(?:/[\w.\-]+){2,}\.py\b|/(?:etc|var|opt|usr|home|root|srv|app|tmp)/[^\s'\"`)\]},]+",  # file paths
    re.IGNORECASE,
)
_SPACES = re.compile(r"[ \t]*\n\s*|[ \t]{2,}")


def clean(text: str) -> str:
    """`text` without LiteLLM's internals: what is left is the part that tells the user what to fix."""
    text = _TAIL.sub("", text)
    for pattern in _BOOKKEEPING:
        text = pattern.sub("", text)
    text = _PREFIXES.sub("", text)
    inner = _provider_message(text)
    if inner is not None:
        text = _PREFIXES.sub("", inner)
    text = _SECRETS.sub(REDACTED, text)
    text = _NAMED_SECRET.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    text = _INTERNALS.sub(REDACTED, text)
    text = _SPACES.sub(" ", text).strip(" \t\n:-")
    return text[:MAX_MESSAGE]


def _provider_message(text: str) -> str | None:
    """The provider's own message inside the openai SDK's "Error code: N - {...}" text, if there is one."""
    match = _PROVIDER_BODY.search(text)
    if match is None or len(match.group(2)) > 20_000:
        return None
    try:
        body = ast.literal_eval(match.group(2))  # a Python dict's repr: literals only, never code
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


def relayed(status: int, body: bytes) -> dict[str, Any] | None:
    """The OpenAI-shaped error a client gets for LiteLLM's `status` answer `body`, cleaned;
    None when the status is not RELAYED (the gateway answers with its own error)."""
    if status not in RELAYED:
        return None
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:  # a plain-text answer
        parsed = {"error": body.decode("utf-8", "replace")}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, str):  # {"error": "text"}, as some of LiteLLM's routes answer
        error = {"message": error}
    elif not isinstance(error, dict):  # FastAPI's {"detail": "..."}, or no error at all
        detail = parsed.get("detail") if isinstance(parsed, dict) else None
        error = {"message": detail if isinstance(detail, str) else ""}
    message = error.get("message")
    message = clean(message) if isinstance(message, str) else ""
    return {
        "error": {
            "message": message or _GENERIC.get(status, _GENERIC[400]),
            "type": _word(error.get("type"), _TYPES.get(status, "invalid_request_error")),
            "param": _word(error.get("param"), None),
            "code": _word(error.get("code"), str(status)),
        }
    }


def _word(value: Any, default: str | None) -> str | None:
    """A short identifier-like field kept as LiteLLM wrote it (its "None" strings are None)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or value in ("None", "none", "") or not _WORD.fullmatch(value):
        return default
    return value


# `response.failed` error codes (LiteLLM's common_utils/responses_stream_errors.py) that stand for
# the statuses that are not RELAYED.
_FAILURES_NOT_RELAYED = frozenset({"server_error", "request_timeout", "authentication_error", "permission_error"})


def relayed_failure(error: Any) -> dict[str, Any] | None:
    """A Responses API stream's failure `{"code", "message"}` with its message cleaned; None when
    its code says the user cannot act on it (the gateway's words then)."""
    if not isinstance(error, dict) or not isinstance(error.get("code"), str) or error["code"] in _FAILURES_NOT_RELAYED:
        return None
    message = error.get("message")
    message = clean(message) if isinstance(message, str) else ""
    return {"code": _word(error["code"], "invalid_request_error"), "message": message or _GENERIC[400]}


def event_status(payload: Any) -> int:
    """The HTTP status a stream's `{"error": {...}}` event stands for: its code when that is a
    status (LiteLLM writes the exception's status_code there), else 500."""
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    text = str(code) if isinstance(code, (int, str)) and not isinstance(code, bool) else ""
    return int(text) if len(text) == 3 and text.isdigit() and text[0] in "45" else 500
