"""Who is calling: the key from the request's headers and its record, from the in-process cache
or, past the failed-authentication limiter (gateway/serving/authguard.py), from the key store.

    credentials(state, scope)       the key, its hash and what the cache knows: not a coroutine,
                                    so that for a cached key the hot path awaits nothing (a
                                    coroutine layer costs ~3k instructions: docs/performance.md)
    authenticate(state, scope, ...) the record of a key the cache does not hold, or 401/429/503
"""

from __future__ import annotations

from typing import Any

from gateway.errors import AuthenticationError, StoreUnavailableError
from gateway.ops.metrics import AUTH_DECISIONS
from gateway.state import GatewayState
from gateway.store.keys import extract_key, key_digest, well_formed
from policies.records import Code, KeyRecord

_DENY_MISSING = AUTH_DECISIONS.labels(result="deny", reason="MISSING_API_KEY")
_DENY_INVALID = AUTH_DECISIONS.labels(result="deny", reason="INVALID_API_KEY")
_DENY_LIMITED = AUTH_DECISIONS.labels(result="deny", reason="RATE_LIMITED")
_STORE_ERROR = AUTH_DECISIONS.labels(result="error", reason="KEY_STORE_UNAVAILABLE")


def credentials(state: GatewayState, scope: dict[str, Any]) -> tuple[str, bytes, KeyRecord | None | bool]:
    """The key (forwarded upstream in passthrough mode only), its SHA-256 digest and what the
    in-process cache knows of it (False: nothing yet; None: no such key; then `authenticate`)."""
    key = extract_key(scope["headers"])
    if key is None:
        _DENY_MISSING.inc()
        raise AuthenticationError(Code.MISSING_API_KEY.value)
    digest = key_digest(key)
    return key, digest, state.store.cached(digest)


async def authenticate(
    state: GatewayState, scope: dict[str, Any], key: str, digest: bytes, found: KeyRecord | None | bool
) -> KeyRecord:
    """A key the in-process cache does not hold (`found` False) or knows to be unknown (None),
    past the failed-authentication limiter: a refused address gets 429 before any lookup, a key
    of no possible shape is not looked up (gateway/store/keys.py `well_formed`), and every
    unknown or malformed key counts against its address."""
    guard = state.auth_guard
    address = guard.address(scope)
    refusal = guard.refusal(address)
    if refusal is not None:
        _DENY_LIMITED.inc()
        raise refusal
    record = await _look_up(state, digest) if found is False and well_formed(key) else None
    if record is None:
        state.offenders.failed_address(address)  # gateway/ops/offenders.py
        limited = await guard.failed(address)
        if limited is not None:
            _DENY_LIMITED.inc()
            raise limited
        _DENY_INVALID.inc()
        raise AuthenticationError(Code.INVALID_API_KEY.value)
    return record


async def _look_up(state: GatewayState, digest: bytes) -> KeyRecord | None:
    try:
        return await state.store.lookup(digest)
    except StoreUnavailableError:
        _STORE_ERROR.inc()
        raise
