"""API keys: extraction, hashing, and the KeyStore (L1 -> Redis -> Postgres).

    lookup(digest)
      L1   in-process dict, TTL + bounded size; a warm key costs one dict lookup.
           Keyed by the SHA-256 digest (32 bytes; Redis and Postgres are asked by its hex);
           each entry holds the record and when it was loaded. Records are stored compacted:
           model names and statuses interned, equal model lists and subscription maps shared
           (tests/perf/l1_memory.py: ~450 bytes per cached key, ~590 of RSS)
      L2   Redis, shared by every instance (optional: REDIS_URL unset -> skipped)
      DB   one Postgres query (db.load_key); concurrent misses share one query
    negative cache: unknown hashes are remembered briefly (L1 and Redis) so a flood
    of random keys does not reach Postgres.
    A record loaded from Postgres is written to Redis in the background: the request
    that missed waits for two round trips (Redis, Postgres), not three.

Invalidation events ({"kind": "key"|"user"|"all", "id", "key_hash"?}) arrive from
Postgres NOTIFY (triggers, so writes by any system count) and from Redis pub/sub
(published by our own admin flows); see gateway/store/invalidation.py. Each one drops the
L1 entries and the Redis entries it concerns and bumps a generation counter, so a
load that was in flight across the change never stores its stale answer in L1.

Failure: Redis errors skip L2 for a few seconds; a Postgres error serves the last
known record of a key (stale-if-error) while it is at most `cache.max_stale_seconds`
old (counted from when L1 last got it from Redis or Postgres), or raises
StoreUnavailableError (503).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import sys
import time
from types import MappingProxyType
from typing import Any, Callable, Mapping

import orjson

from gateway.store import db
from gateway.config import CacheConfig
from gateway.errors import StoreUnavailableError
from gateway.ops.metrics import KEY_CACHE_LOOKUPS, TALLY
from policies.limits import NO_LIMITS, Limits
from policies.records import KeyRecord, SubscriptionRecord

log = logging.getLogger("maas_gateway.keys")

# The record's shape in Redis is part of the prefix: bump the version when encode_record changes
# incompatibly, so that during a rolling deploy (or a rollback) instances of two versions neither
# read nor break on each other's records; each deletes its own on invalidation, and TTLs end the rest.
REDIS_PREFIX = "maas:key:v3:"  # v3: no key_prefix
# Earlier versions' prefixes: an invalidation deletes their records too, else a rollback (or a version
# still running beside this one) would read a revoked key's old record as active until its Redis TTL.
EARLIER_PREFIXES = ("maas:key:", "maas:key:v2:")
REDIS_CHANNEL = "maas:invalidate"
REDIS_BACKOFF_SECONDS = 5.0
NEGATIVE_MAX_ENTRIES = 10_000
SHARED_MAX_ENTRIES = 10_000  # distinct model lists / subscription maps kept for sharing
MAX_PENDING_FILLS = 1_000  # Redis writes in flight; beyond, a fill is skipped (Redis is a cache)
_NEGATIVE = b"null"

_BEARER = "bearer "

_L1_HIT = TALLY.cell(KEY_CACHE_LOOKUPS, ("l1", "hit"))  # the hot path's two: metrics.TALLY cells
_L1_NEGATIVE = TALLY.cell(KEY_CACHE_LOOKUPS, ("l1", "negative"))
_L2_HIT = KEY_CACHE_LOOKUPS.labels(tier="redis", result="hit")
_L2_NEGATIVE = KEY_CACHE_LOOKUPS.labels(tier="redis", result="negative")
_DB_HIT = KEY_CACHE_LOOKUPS.labels(tier="postgres", result="hit")
_DB_NEGATIVE = KEY_CACHE_LOOKUPS.labels(tier="postgres", result="negative")
_STALE = KEY_CACHE_LOOKUPS.labels(tier="l1", result="stale")
_L2_UNREADABLE = KEY_CACHE_LOOKUPS.labels(tier="redis", result="unreadable")


def extract_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The API key from `Authorization: Bearer`, `api-key` or `x-api-key` (that precedence); None when absent.

    Whatever else the client sent, only this key is forwarded upstream (passthrough mode),
    so LiteLLM authenticates exactly the key the gateway checked.
    """
    api_key = x_api_key = None  # the first non-empty one of each
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            if text[:7].lower() == _BEARER:
                text = text[7:].strip()
                if text:
                    return text  # the first of precedence: nothing later can change the answer
        elif name == b"api-key":
            if api_key is None:
                api_key = value.decode("latin-1").strip() or None
        elif name == b"x-api-key":
            if x_api_key is None:
                x_api_key = value.decode("latin-1").strip() or None
    return api_key or x_api_key


KEY_PREFIX = "sk-"  # the gateway's keys ("sk-" + 43 url-safe characters) and LiteLLM's virtual keys
MAX_KEY_CHARS = 512  # LiteLLM's generated keys have 25 characters; custom ones any length, "sk-" first


def well_formed(key: str) -> bool:
    """Could this be a key of either mode? Checked before a lookup (on an L1 miss), so garbage costs no I/O.

    Every key the gateway issues and every LiteLLM virtual key (LiteMaaS's keys are those)
    starts with "sk-": LiteLLM generates "sk-" + 22 url-safe characters and refuses custom
    keys without the prefix (key_management_endpoints.py). Anything printable after it is
    accepted, so no valid key of either mode is refused here.
    """
    return key.startswith(KEY_PREFIX) and len(key) <= MAX_KEY_CHARS and key.isascii() and key.isprintable()


def key_digest(key: str) -> bytes:
    """The key's SHA-256: what the L1 is keyed by (65 bytes of object, the hex string 113)."""
    return hashlib.sha256(key.encode()).digest()


def hash_key(key: str) -> str:
    """The key's SHA-256 in hex: `api_keys.key_hash`, Redis keys and invalidation events."""
    return key_digest(key).hex()


def key_prefix(key: str) -> str:
    """The displayable part of a key (LiteMaaS: first 7 characters)."""
    return key[:7]


def encode_record(record: KeyRecord | None) -> bytes:
    if record is None:
        return _NEGATIVE
    return orjson.dumps(
        {
            "key_id": record.key_id,
            "user_id": record.user_id,
            "is_active": record.is_active,
            "revoked_at": record.revoked_at,
            "expires_at": record.expires_at,
            "user_active": record.user_active,
            "models": record.models,
            "subscriptions": [[s.model_id, s.status, s.expires_at, _limits_list(s.limits), s.reset_at]
                              for s in record.subscriptions.values()],
            "limits": _limits_list(record.limits),
            "user_limits": _limits_list(record.user_limits),
            "model_limits": {model: _limits_list(limits) for model, limits in record.model_limits.items()},
        }
    )


def decode_record(data: bytes) -> KeyRecord | None:
    if data == _NEGATIVE:
        return None
    raw = orjson.loads(data)
    # [model, status, expires_at, limits, reset_at]; records written before limits had three fields
    subscriptions = {s[0]: SubscriptionRecord(s[0], s[1], s[2], _limits(s[3] if len(s) > 3 else None),
                                              s[4] if len(s) > 4 else None) for s in raw.pop("subscriptions")}
    raw["models"] = tuple(raw["models"])
    raw["limits"] = _limits(raw.get("limits"))
    raw["user_limits"] = _limits(raw.get("user_limits"))
    raw["model_limits"] = {model: _limits(values) for model, values in (raw.get("model_limits") or {}).items()}
    return KeyRecord(subscriptions=subscriptions, **raw)


def _limits_list(limits: Limits) -> list | None:
    return None if limits is NO_LIMITS or not limits.any() else list(dataclasses.astuple(limits))


def _limits(values: list | None) -> Limits:
    return NO_LIMITS if values is None else Limits(*values)


class Entry:
    """One L1 entry: 48 bytes and a float, where a (record, fresh until, loaded at) tuple took 64 and two."""

    __slots__ = ("record", "loaded_at")

    def __init__(self, record: KeyRecord, loaded_at: float) -> None:
        self.record = record
        self.loaded_at = loaded_at  # the clock when L1 got it from Redis or Postgres


class KeyStore:
    """Answers "which record has this key's digest?" as cheaply as the caches allow."""

    def __init__(
        self,
        pool: Any,
        redis: Any | None,
        config: CacheConfig,
        clock: Callable[[], float] = time.monotonic,
        acquire_timeout: float | None = None,
        key_query: str = db.KEY_QUERY,  # LiteMaaS mode: gateway/store/litemaas.py's
    ) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._key_query = key_query
        self._redis = redis
        self._config = config
        self._clock = clock
        self._l1: dict[bytes, Entry] = {}
        self._ttl = config.ttl_seconds
        self._reload_until = float("-inf")  # forget_all(): entries loaded at or before this are not fresh
        self._negative: dict[bytes, float] = {}
        self._shared_models: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._shared_subscriptions: dict[tuple, Mapping[str, SubscriptionRecord]] = {}
        self._inflight: dict[bytes, asyncio.Future] = {}
        self._fills: set[asyncio.Task] = set()
        self._generation = 0
        self._redis_skip_until = 0.0
        self._redis_ttl_ms = int(config.redis_ttl_seconds * 1000)
        self._negative_ttl_ms = max(1, int(config.negative_ttl_seconds * 1000))

    # -- the hot path -------------------------------------------------------

    def cached(self, digest: bytes) -> KeyRecord | None | bool:
        """L1 only, no await: the record, None for a known-unknown key, False on a miss."""
        entry = self._l1.get(digest)
        now = self._clock()
        if entry is not None and now - entry.loaded_at < self._ttl and entry.loaded_at > self._reload_until:
            _L1_HIT[0] += 1
            return entry.record
        expiry = self._negative.get(digest)
        if expiry is not None and expiry > now:
            _L1_NEGATIVE[0] += 1
            return None
        return False

    async def lookup(self, digest: bytes) -> KeyRecord | None:
        """The record for this key digest (key_digest()), or None when the key does not exist."""
        found = self.cached(digest)
        if found is not False:
            return found  # type: ignore[return-value]
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            record = await self._load(digest)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        else:
            future.set_result(record)
            return record
        finally:
            del self._inflight[digest]

    async def _load(self, digest: bytes) -> KeyRecord | None:
        generation = self._generation
        key_hash = digest.hex()
        found = await self._redis_get(key_hash)
        if found is not False:
            self._remember(digest, found, generation)  # type: ignore[arg-type]
            return found  # type: ignore[return-value]
        try:
            record = await db.load_key(self._pool, key_hash, self._acquire_timeout, self._key_query)
        except StoreUnavailableError:
            stale = self._l1.get(digest)
            if stale is not None and self._clock() - stale.loaded_at <= self._config.max_stale_seconds:
                _STALE.inc()
                return stale.record
            raise
        (_DB_HIT if record is not None else _DB_NEGATIVE).inc()
        if self._remember(digest, record, generation) and self._redis_usable() and len(self._fills) < MAX_PENDING_FILLS:
            fill = asyncio.create_task(self._redis_fill(key_hash, record, generation), name="redis-fill")
            self._fills.add(fill)
            fill.add_done_callback(self._fills.discard)
        return record

    def _remember(self, digest: bytes, record: KeyRecord | None, generation: int) -> bool:
        """Store in L1 unless an invalidation happened since the load began."""
        if generation != self._generation:
            return False
        now = self._clock()
        if record is None:
            self._l1.pop(digest, None)  # a deleted key: not served stale when Postgres is down later
            if len(self._negative) >= NEGATIVE_MAX_ENTRIES:
                self._negative.pop(next(iter(self._negative)))
            self._negative[digest] = now + self._config.negative_ttl_seconds
            return True
        self._negative.pop(digest, None)
        if digest not in self._l1 and len(self._l1) >= self._config.max_entries:
            self._l1.pop(next(iter(self._l1)))  # oldest first
        self._l1[digest] = Entry(self._compact(record), now)
        return True

    def _compact(self, record: KeyRecord) -> KeyRecord:
        """An equal record that shares what many cached records hold alike.

        Each record loaded from Postgres or Redis brings its own copies of the model
        names, statuses, model list and subscription map; most users hold the same ones.
        """
        models_table, subscriptions_table = self._shared_models, self._shared_subscriptions
        if len(models_table) >= SHARED_MAX_ENTRIES:
            models_table.clear()  # records already cached keep their copies
        if len(subscriptions_table) >= SHARED_MAX_ENTRIES:
            subscriptions_table.clear()
        models = tuple(map(sys.intern, record.models))
        models = models_table.setdefault(models, models)
        shape = tuple((s.model_id, s.status, s.expires_at, s.limits, s.reset_at) for s in record.subscriptions.values())
        subscriptions = subscriptions_table.get(shape)
        if subscriptions is None:
            subscriptions = subscriptions_table[shape] = MappingProxyType(
                {sys.intern(m): SubscriptionRecord(sys.intern(m), sys.intern(status), expires, limits, reset_at)
                 for m, status, expires, limits, reset_at in shape}
            )
        compact = dataclasses.replace(record, user_id=sys.intern(record.user_id), models=models)
        object.__setattr__(compact, "subscriptions", subscriptions)  # as it is: __post_init__ copies
        return compact

    # -- Redis (L2) ---------------------------------------------------------

    def _redis_usable(self) -> bool:
        return self._redis is not None and self._clock() >= self._redis_skip_until

    def _redis_failed(self, exc: BaseException) -> None:
        if self._clock() >= self._redis_skip_until:
            log.warning("redis unavailable, using Postgres directly for %.0fs: %s", REDIS_BACKOFF_SECONDS, type(exc).__name__)
        self._redis_skip_until = self._clock() + REDIS_BACKOFF_SECONDS

    async def _redis_get(self, key_hash: str) -> KeyRecord | None | bool:
        if not self._redis_usable():
            return False
        try:
            data = await self._redis.get(REDIS_PREFIX + key_hash)
        except Exception as exc:  # redis-py raises many types; all mean "L2 unusable"
            self._redis_failed(exc)
            return False
        if data is None:
            return False
        try:
            record = decode_record(data)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:  # another shape: a miss
            _L2_UNREADABLE.inc()
            log.warning("unreadable key record in Redis, read from Postgres instead: %s", type(exc).__name__)
            return False
        (_L2_HIT if record is not None else _L2_NEGATIVE).inc()
        return record

    async def _redis_fill(self, key_hash: str, record: KeyRecord | None, generation: int) -> None:
        """Write a record loaded from Postgres to Redis, unless an invalidation came first."""
        if generation != self._generation or not self._redis_usable():
            return
        ttl = self._redis_ttl_ms if record is not None else self._negative_ttl_ms
        try:
            await self._redis.set(REDIS_PREFIX + key_hash, encode_record(record), px=ttl)
        except Exception as exc:
            self._redis_failed(exc)

    async def settle(self) -> None:
        """Wait for the Redis writes still in flight (before closing Redis; in tests)."""
        while self._fills:
            await asyncio.gather(*self._fills, return_exceptions=True)

    async def _redis_delete(self, hashes: list[str]) -> None:
        if not hashes or not self._redis_usable():
            return
        try:
            await self._redis.delete(*(prefix + h for h in hashes for prefix in (REDIS_PREFIX, *EARLIER_PREFIXES)))
        except Exception as exc:
            self._redis_failed(exc)

    # -- invalidation -------------------------------------------------------

    def forget(self, *, key_hash: str | None = None, key_id: str | None = None, user_id: str | None = None) -> list[str]:
        """Drop matching L1 entries now (`key_hash`: hex, as events name keys); returns the hex hashes dropped."""
        self._generation += 1
        dropped: list[str] = []
        if key_hash is not None:
            try:
                digest = bytes.fromhex(key_hash)
            except (ValueError, TypeError):  # no key's hash: nothing cached under it
                digest = b""
            self._negative.pop(digest, None)
            if self._l1.pop(digest, None) is not None:
                dropped.append(digest.hex())  # as Redis names it, however the event spelled it
        if key_id is not None or user_id is not None:
            for digest, entry in list(self._l1.items()):
                if entry.record.key_id == key_id or entry.record.user_id == user_id:
                    del self._l1[digest]
                    dropped.append(digest.hex())
        return dropped

    def forget_all(self) -> None:
        """Every L1 record must be reloaded before its next use, but is kept for stale-if-error:
        a lost invalidation listener (Postgres going down) must not take the warm keys with it.
        A record loaded at the same clock reading as this call is reloaded too (the safe side of a tie)."""
        self._generation += 1
        self._reload_until = self._clock()
        self._negative.clear()

    async def invalidate(self, event: dict) -> None:
        """Apply one invalidation event here and in Redis."""
        kind, ident, key_hash = event.get("kind"), event.get("id"), event.get("key_hash")
        if kind == "all":
            self.forget_all()
            return
        if kind == "key":
            dropped = self.forget(key_hash=key_hash, key_id=ident)
            hashes = [key_hash] if isinstance(key_hash, str) and key_hash else await self._hashes("id", ident)
        elif kind == "user":
            dropped = self.forget(user_id=ident)
            hashes = await self._hashes("user_id", ident)
        else:
            log.warning("ignoring malformed invalidation event: %r", event)
            return
        await self._redis_delete(sorted(set(hashes) | set(dropped)))

    async def _hashes(self, column: str, value: Any) -> list[str]:
        if value is None:
            return []
        try:
            rows = await self._pool.fetch(f"SELECT key_hash FROM api_keys WHERE {column} = $1", value)
        except db.DB_ERRORS:
            return []
        return [r["key_hash"] for r in rows]

    @property
    def size(self) -> int:
        return len(self._l1)
