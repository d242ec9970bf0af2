"""Health endpoints, answered from state a background probe keeps fresh.

    /health/live          the process answers (no dependency is looked at)
    /health/ready         it can serve: config loaded, not draining, and Postgres reachable or
                          keys cached (200 ready | 503 not_ready | 503 draining); for a load
                          balancer or Kubernetes
    /health/integration   LiteLLM (status, latency, last_sync, circuit_breaker, last_failure),
                          Postgres, Redis, every breaker's state; 200, with "status": healthy |
                          degraded. LiteLLM's status and the breakers are as of now: an open
                          breaker, or a request that found LiteLLM failing after the last
                          probe, makes it "unhealthy" at once, not at the next probe.

Scraping them costs a dictionary read. The probe runs every `health.interval_seconds`:
Postgres and Redis always (readiness needs them), LiteLLM only with
`health.integration_check` (INTEGRATION_HEALTH_CHECK=false turns that off, and
/health/integration then says "disabled").

The LiteLLM probe is GET /health/liveliness on its own connection, outside the
breaker, so it reports what LiteLLM does, not what the breaker remembers; except when
the breaker is open and its trial is due: then the probe goes through the breaker
and is the trial, so a breaker closes by itself once LiteLLM answers again, even
when no request arrives. The probe also exports gauges (maas_gateway_dependency_up,
maas_gateway_dependency_probe_latency_seconds, ..._last_user_sync_timestamp_seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.serving.breaker import Breaker
from gateway.errors import GatewayError
from gateway.ops.metrics import DEPENDENCY_LATENCY, DEPENDENCY_UP, LAST_USER_SYNC
from gateway.state import DependencyCheck, GatewayState, HealthReport

log = logging.getLogger("maas_gateway.health")

_LIVELINESS = "/health/liveliness"  # LiteLLM's: 200 "I'm alive!", no auth
_PG_TIMEOUT_SECONDS = 2.0
_LAST_SYNC_QUERY = "SELECT extract(epoch FROM max(last_synced_at))::float8 FROM users"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _result(name: str, healthy: bool, started: float) -> DependencyCheck:
    elapsed = time.perf_counter() - started
    DEPENDENCY_UP.labels(dependency=name).set(1 if healthy else 0)
    DEPENDENCY_LATENCY.labels(dependency=name).set(elapsed)
    return DependencyCheck("healthy" if healthy else "unhealthy", round(elapsed * 1000, 1))


_DISABLED = DependencyCheck("disabled")


def litellm_breakers(state: GatewayState) -> list[Breaker]:
    """LiteLLM's breakers of this process: the inference path's and the management client's."""
    found = [state.breaker]
    management = state.account_services.management
    if management is not None and management.breaker is not state.breaker:
        found.append(management.breaker)
    return found


def breakers(state: GatewayState) -> list[Breaker]:
    """Every breaker of this process: LiteLLM's and each model's made so far."""
    return litellm_breakers(state) + state.model_breakers.all()


async def _probe_litellm(state: GatewayState, session: aiohttp.ClientSession) -> DependencyCheck:
    started = time.perf_counter()
    timeout = state.config.litellm.timeout_ms / 1000
    healthy = False
    trial = state.breaker.trial_due()
    try:
        if trial:  # the breaker's trial call: success closes it
            response = await state.upstream.request("GET", _LIVELINESS, {}, None)
            try:
                await state.upstream.read_body(response)
                healthy = response.status == 200
            finally:
                response.release()
        else:
            async with session.get(state.upstream.base_url + _LIVELINESS, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                await r.read()
                healthy = r.status == 200
    except (aiohttp.ClientError, TimeoutError, GatewayError):
        healthy = False
    return _result("litellm", healthy, started)


async def _probe_postgres(state: GatewayState) -> DependencyCheck:
    if state.pool is None:
        return _DISABLED
    started = time.perf_counter()
    try:
        await state.pool.fetchval("SELECT 1", timeout=_PG_TIMEOUT_SECONDS)
        healthy = True
    except Exception:  # db.DB_ERRORS, and asyncpg's InternalClientError when a connection dies mid-query
        healthy = False
    result = _result("postgres", healthy, started)
    if healthy and state.config.database.schema == "native":  # LiteMaaS's users have no last_synced_at
        # When users were last synced with LiteLLM, by any instance.
        with contextlib.suppress(Exception):
            last = await state.pool.fetchval(_LAST_SYNC_QUERY, timeout=_PG_TIMEOUT_SECONDS)
            if last is not None:
                state.last_user_sync = max(last, state.last_user_sync or 0.0)
                LAST_USER_SYNC.set(state.last_user_sync)
    return result


async def _probe_redis(state: GatewayState) -> DependencyCheck:
    if state.redis is None:
        return _DISABLED
    started = time.perf_counter()
    try:
        await state.redis.ping()
        healthy = True
    except Exception:  # redis-py raises many types; all mean "not answering"
        healthy = False
    return _result("redis", healthy, started)


async def probe(state: GatewayState, session: aiohttp.ClientSession | None) -> HealthReport:
    """One round of checks; LiteLLM is skipped when `session` is None (integration check off)."""
    checks = [_probe_postgres(state), _probe_redis(state)]
    if session is not None:
        checks.append(_probe_litellm(state, session))
    results = await asyncio.gather(*checks)
    return HealthReport(postgres=results[0], redis=results[1], litellm=results[2] if session is not None else None,
                        checked_ts=time.time())


async def _probe_loop(state: GatewayState, session: aiohttp.ClientSession | None) -> None:
    try:
        while True:
            await asyncio.sleep(state.config.health.interval_seconds)  # read each time: reloadable
            try:
                state.health = await probe(state, session)
            except Exception:  # a bug must not stop the probe for good
                log.exception("health probe failed")
    finally:
        if session is not None:
            await session.close()


async def start_health(state: GatewayState) -> list[asyncio.Task]:
    """Run the first probe now (so readiness is known when serving starts) and return the loop's task."""
    session = None
    if state.config.health.integration_check:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    state.health = await probe(state, session)
    return [asyncio.create_task(_probe_loop(state, session), name="health-probe")]


def _state(request: Request) -> GatewayState | None:
    return getattr(request.app.state.holder, "state", None)


async def live(request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})


async def ready(request: Request) -> JSONResponse:
    state = _state(request)
    if state is None:
        return JSONResponse({"status": "not_ready", "config_loaded": False}, status_code=503)
    report = state.health
    postgres_ok = state.pool is not None and report is not None and report.postgres.status == "healthy"
    cached = state.store.size
    ok = (postgres_ok or cached > 0) and not state.draining
    body = {
        "status": "draining" if state.draining else "ready" if ok else "not_ready",
        "config_loaded": True,
        "postgres": postgres_ok,
        "cached_keys": cached,
        "enforcement": state.mode.value,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


async def integration(request: Request) -> JSONResponse:
    state = _state(request)
    if state is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    report = state.health
    if report is None or report.litellm is None:
        return JSONResponse({"status": "disabled", "detail": "INTEGRATION_HEALTH_CHECK is false"})
    all_breakers = {b.target: b.state for b in breakers(state)}
    breaker = state.breaker
    failure = breaker.last_failure
    litellm = dict(
        report.litellm.as_json(),
        last_sync=_iso(state.last_user_sync),
        circuit_breaker=breaker.state,  # now, not as of the last probe
        last_failure=None if failure is None else {"at": _iso(failure[0]), "reason": failure[1]},
    )
    if breaker.state != "closed" or (failure is not None and failure[0] >= report.checked_ts):
        litellm["status"] = "unhealthy"  # what requests found since the probe's last look
    body = {
        "status": "healthy",
        "litellm": litellm,
        "postgres": report.postgres.as_json(),
        "redis": report.redis.as_json(),
        "circuit_breakers": all_breakers,
        "checked_at": _iso(report.checked_ts),
    }
    dependencies_ok = all(body[name]["status"] in ("healthy", "disabled") for name in ("litellm", "postgres", "redis"))
    if not dependencies_ok or any(s != "closed" for s in all_breakers.values()):
        body["status"] = "degraded"
    return JSONResponse(body)


def health_routes() -> list[Route]:
    return [
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/health/integration", integration),
    ]


__all__ = ["breakers", "health_routes", "probe", "start_health"]
