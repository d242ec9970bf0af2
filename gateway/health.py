"""Health endpoints, answered from state a background probe keeps fresh.

    /health/live          the process answers
    /health/ready         it can serve: config loaded, and Postgres reachable or keys cached
    /health/integration   LiteLLM (status, latency, last_sync, circuit_breaker), Postgres, Redis

Scraping them costs a dictionary read: the probe runs every
`health.interval_seconds` (off with INTEGRATION_HEALTH_CHECK=false).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import db
from gateway.state import GatewayState


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def _probe_litellm(state: GatewayState) -> dict[str, Any]:
    started = time.perf_counter()
    url = state.upstream.base_url + "/health/liveliness"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=state.config.litellm.timeout_ms / 1000)) as r:
                await r.read()
                healthy = r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        healthy = False
    return {"status": "healthy" if healthy else "unhealthy", "latency": round((time.perf_counter() - started) * 1000, 1)}


async def _probe_postgres(state: GatewayState) -> dict[str, Any]:
    if state.pool is None:
        return {"status": "disabled"}
    started = time.perf_counter()
    try:
        await state.pool.fetchval("SELECT 1", timeout=2)
        status = "healthy"
    except db.DB_ERRORS:
        status = "unhealthy"
    return {"status": status, "latency": round((time.perf_counter() - started) * 1000, 1)}


async def _probe_redis(state: GatewayState) -> dict[str, Any]:
    if state.redis is None:
        return {"status": "disabled"}
    started = time.perf_counter()
    try:
        await state.redis.ping()
        status = "healthy"
    except Exception:
        status = "unhealthy"
    return {"status": status, "latency": round((time.perf_counter() - started) * 1000, 1)}


async def probe(state: GatewayState) -> dict[str, Any]:
    litellm, postgres, redis = await asyncio.gather(_probe_litellm(state), _probe_postgres(state), _probe_redis(state))
    litellm["circuit_breaker"] = state.breaker.state
    litellm["last_sync"] = _iso(state.extras.get("last_user_sync"))
    return {"litellm": litellm, "postgres": postgres, "redis": redis, "checked_at": _iso(time.time())}


async def _probe_loop(state: GatewayState) -> None:
    while True:
        state.extras["health"] = await probe(state)
        await asyncio.sleep(state.config.health.interval_seconds)


async def start_health(state: GatewayState) -> list[asyncio.Task]:
    if not state.config.health.integration_check:
        return []
    state.extras["health"] = await probe(state)
    return [asyncio.create_task(_probe_loop(state), name="health-probe")]


def _state(request: Request) -> GatewayState:
    return request.app.state.holder.state


async def live(request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})


async def ready(request: Request) -> JSONResponse:
    state = _state(request)
    report = state.extras.get("health") or {}
    postgres_ok = state.pool is not None and report.get("postgres", {}).get("status") != "unhealthy"
    ok = postgres_ok or state.store.size > 0
    body = {"status": "ready" if ok else "not_ready", "postgres": postgres_ok, "cached_keys": state.store.size}
    return JSONResponse(body, status_code=200 if ok else 503)


async def integration(request: Request) -> JSONResponse:
    state = _state(request)
    report = state.extras.get("health")
    if report is None:
        return JSONResponse({"status": "disabled", "detail": "INTEGRATION_HEALTH_CHECK is false"})
    report = dict(report)
    report["litellm"] = dict(report["litellm"], circuit_breaker=state.breaker.state)
    healthy = all(report[name]["status"] in ("healthy", "disabled") for name in ("litellm", "postgres", "redis"))
    report["status"] = "healthy" if healthy and state.breaker.state == "closed" else "degraded"
    return JSONResponse(report, status_code=200)


def health_routes() -> list[Route]:
    return [
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/health/integration", integration),
    ]


__all__ = ["health_routes", "start_health", "probe"]
