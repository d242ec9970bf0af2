"""create_app(config): the ASGI application.

    GatewayApp.__call__                    over server.max_concurrency in flight -> 503 SERVER_BUSY
      on server.admin_port                 /admin/v1/*, /metrics, /health/* only (else 404)
      inference route (routes.RouteTable)  -> proxy.Proxy.handle   raw ASGI, the hot path
      /v1/models, /v1/models/{id}          -> proxy.Proxy.models
      /health/*, /metrics, /admin/v1/*     -> Starlette (lifespan, admin API, health); with an
                                              admin port, /health/live|ready only
      anything raising                     -> 500 INTERNAL_ERROR with the request id (gateway/serving/failures.py)
      /console/*                           -> Starlette, the web console (gateway/console/), when
                                              configured; on the public port
      anything else                        -> 404 ROUTE_NOT_FOUND, never forwarded

The dispatch in front of Starlette keeps its router off the hot path; Starlette
still owns the lifespan, where every resource is made and handed over as state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from gateway.store import db

from gateway.runtime import drain

from gateway.store import litemaas
from gateway.store import redis_client

from gateway.ops import metrics
from gateway.admin import admin_routes
from gateway.serving.authguard import AuthGuard
from gateway.serving.breaker import Breaker, ModelBreakers
from gateway.config import CONFIG_ENV, Config, ConfigError, check_serving
from gateway.console import console_app
from gateway.errors import GatewayError, InternalError, MethodNotAllowedError, RouteNotFoundError, ServerBusyError
from gateway.serving.failures import answer_unexpected
from gateway.runtime.health import health_routes, start_health
from gateway.store.invalidation import Invalidator
from gateway.store.keyquery import key_query
from gateway.store.keys import KeyStore
from gateway.ops.offenders import Offenders
from gateway.limits.limiter import Limiter
from gateway.serving.proxy import Proxy, _request_id, send_error
from gateway.accounts.reconciler import start_account_services
from gateway.runtime.reload import ConfigReloader, set_mode_gauge
from gateway.serving.routes import RouteTable, model_id_from_models_path
from gateway.state import GatewayState
from gateway.serving.upstream import Upstream, allowed_headers, dropped_headers
from gateway.limits.usage_recorder import UsageRecorder
from policies.forwarded import parse_networks

log = logging.getLogger("maas_gateway.app")

KNOWN_MODELS_REFRESH_SECONDS = 30.0
_OPERATOR_PATHS = (b"/health/", b"/admin/v1/", b"/metrics")
_PUBLIC_HEALTH = (b"/health/live", b"/health/ready")
REQUEST_ID_SCOPE = "maas.request_id"  # set by Starlette's last-resort handler, read by the net in __call__


class StateHolder:
    """Filled by the lifespan; the raw ASGI handlers read `state` from it."""

    state: GatewayState


def _error_response(error: GatewayError) -> Response:
    return Response(error.body(), status_code=error.status, headers={k.decode(): v.decode() for k, v in error.headers()})


async def _http_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 404:
        return _error_response(RouteNotFoundError())
    if isinstance(exc, HTTPException) and exc.status_code == 405:  # Starlette's router names the methods in Allow
        return _error_response(MethodNotAllowedError((exc.headers or {}).get("Allow", "").split(", ")))
    status = getattr(exc, "status_code", 500)
    error = GatewayError("INVALID_REQUEST" if status < 500 else "INTERNAL_ERROR")
    error.status = status
    return _error_response(error)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _error_response(exc)


async def _metrics(request: Request) -> Response:
    state: GatewayState = request.app.state.holder.state
    metrics.KEY_CACHE_ENTRIES.set(state.store.size)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


async def _known_models(state: GatewayState) -> frozenset[str]:
    names: set[str] = set()
    if state.pool is not None:
        with contextlib.suppress(*db.DB_ERRORS):
            names.update(r["id"] for r in await state.pool.fetch("SELECT id FROM models"))
            names.update(r["model_id"] for r in await state.pool.fetch("SELECT DISTINCT model_id FROM api_key_models"))
    return frozenset(names)


async def _fold_metrics() -> None:
    """The hot path's tally into the Prometheus metrics: a scrape folds too, but with several
    workers a scrape reaches one of them; the others' files are this far behind at most."""
    while True:
        await asyncio.sleep(metrics.FOLD_SECONDS)
        metrics.fold()


async def _refresh_known_models(state: GatewayState) -> None:
    while True:
        state.known_models = await _known_models(state)
        await asyncio.sleep(KNOWN_MODELS_REFRESH_SECONDS)


class GatewayApp:
    def __init__(self, config: Config, config_path: str | None = None, *, own_process: bool = False) -> None:
        self.config = config
        # `serve`'s workers: the process is the app's alone, so its start-up heap may be frozen (lifespan)
        self.own_process = own_process
        # The file reloaded on SIGHUP or change (gateway/runtime/reload.py); `serve --config` names it in the environment.
        self.config_path = config_path
        self.holder = StateHolder()
        self.reloader: ConfigReloader | None = None  # the lifespan's, while serving with a config file
        self.routes = RouteTable(config.routes)
        self.proxy = Proxy(self.holder, config.server.request_id_header,
                           allowed_headers(config.response_headers.allow))
        # server.admin_port: the operator's paths there only; the public port keeps liveness and readiness
        self.admin_port = config.server.admin_port
        self.public_paths = (_OPERATOR_PATHS if self.admin_port is None else _PUBLIC_HEALTH) + (b"/console",)
        self.max_concurrency = config.server.max_concurrency  # requests in flight, health endpoints apart
        self.in_flight = 0
        console = console_app(config, self.holder)
        self.starlette = Starlette(
            routes=[*health_routes(), Route("/metrics", _metrics), *admin_routes(),
                    *([Mount("/console", app=console)] if console is not None else [])],
            lifespan=self.lifespan,
            exception_handlers={HTTPException: _http_exception, GatewayError: _gateway_error, Exception: self._internal_error},
        )
        self.starlette.state.holder = self.holder

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        config = self.config
        check_serving(config)  # `serve` checked already; any other way of running the app too
        pool = None
        if config.database.url:
            try:  # the right kind of database, before any migration touches it
                await litemaas.prepare_database(config.database.url, config.database, apply=config.server.migrate_on_start)
            except ConfigError as exc:
                log.error("cannot start: %s", exc)
                raise
            pool = await db.create_pool(config.database.url, config.database)
        else:
            log.warning("DATABASE_URL is not set: no key can be found, every request is refused")
        redis = redis_client.connect(config.redis.url) if config.redis.url else None
        store = KeyStore(pool, redis, config.cache, acquire_timeout=config.database.acquire_timeout_ms / 1000,
                         key_query=key_query(config.database.schema))
        breaker = Breaker("litellm", config.breaker)
        upstream = Upstream(config.litellm, breaker)
        await upstream.start()
        service_auth = f"Bearer {config.litellm.api_key}" if config.litellm.auth == "service_key" else None
        invalidator = Invalidator(store, config.database.url, redis)
        invalidator.start()
        account_services = await start_account_services(config, pool, invalidator)  # admin API, console, user sync
        state = GatewayState(
            config=config,
            routes=self.routes,
            store=store,
            upstream=upstream,
            breaker=breaker,
            model_breakers=ModelBreakers(config.breaker),
            pool=pool,
            redis=redis,
            mode=config.enforcement.mode,
            service_auth=service_auth,
            auth_guard=AuthGuard(config.security, parse_networks(config.server.trusted_proxies), redis),
            dropped_headers=dropped_headers(service_key=service_auth is not None,
                                            key_header_name=config.litellm.key_header_name),
            limiter=Limiter(config.limits, redis, config.litellm.request_timeout_seconds + config.server.drain_seconds,
                            pool=pool, acquire_timeout=config.database.acquire_timeout_ms / 1000),
            # LiteMaaS mode: usage_daily in the schema maas_gateway, used_* / last_used_at on LiteMaaS's types
            usage=(None if pool is None else UsageRecorder(pool, config.usage) if config.database.schema == "native"
                   else UsageRecorder(pool, config.usage, used_sql=litemaas.USED_SQL, last_used_sql=litemaas.LAST_USED_SQL)),
            offenders=Offenders(redis),
            invalidator=invalidator,
            account_services=account_services,
        )
        state.known_models = await _known_models(state)
        self.holder.state = state
        background = [
            asyncio.create_task(_refresh_known_models(state), name="known-models"),
            asyncio.create_task(_fold_metrics(), name="metrics-fold"),
        ]
        if pool is not None:
            background.append(asyncio.create_task(state.limiter.refresh_prices(pool), name="model-prices"))
        if state.usage is not None:
            state.usage.start()
        state.offenders.start()
        background.extend(await start_health(state))
        set_mode_gauge(state.mode)
        config_path = self.config_path or os.environ.get(CONFIG_ENV)
        reloader = self.reloader = ConfigReloader(state, config_path) if config_path else None
        if reloader is not None:
            reloader.start()
        restore_signals = drain.install(state, asyncio.get_running_loop())
        if self.own_process:
            # What start-up made (modules, config, templates, pools: ~78,000 objects) lives as long as
            # the process: frozen, the collector's full passes stop walking it. Measured under 500
            # long streams (docs/performance.md, "Sixth round"): full collections 61-68 ms -> 16-29 ms.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if self.own_process:
                gc.unfreeze()
            restore_signals()
            if reloader is not None:
                await reloader.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await account_services.stop()
            await invalidator.stop()
            await store.settle()
            await state.limiter.settle()
            if state.usage is not None:
                await state.usage.close()  # after the drain: every request's usage
            await state.offenders.close()
            await upstream.close()
            state.access_log.flush()
            metrics.fold()
            if redis is not None:
                await redis.aclose()
            if pool is not None:
                await pool.close()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.starlette(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrency and not scope["path"].startswith("/health/"):
            request_id = _request_id(scope, self.proxy.id_header, self.proxy.new_request_id)
            await send_error(send, ServerBusyError(retry_after=1), request_id, self.proxy.id_header)
            return
        self.in_flight += 1
        try:
            await self._dispatch(scope, receive, send)
        except Exception as exc:  # the proxy answers its own; this is everything else's net
            id_header = self.proxy.id_header
            request_id = scope.get(REQUEST_ID_SCOPE) or _request_id(scope, id_header, self.proxy.new_request_id)
            await answer_unexpected(send, exc, request_id, id_header, scope.get("path", ""))
        finally:
            self.in_flight -= 1

    async def _internal_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's handler of last resort (its ServerErrorMiddleware re-raises after answering:
        the net in __call__ logs, with the request id put in the scope here)."""
        id_header = self.config.server.request_id_header.encode()
        request_id = _request_id(request.scope, id_header, self.proxy.new_request_id)
        request.scope[REQUEST_ID_SCOPE] = request_id
        error = InternalError(detail=f"request id: {request_id}")
        response = _error_response(error)
        response.headers[id_header.decode()] = request_id
        return response

    async def _not_found(self, scope: dict, send: Any) -> None:
        """404 ROUTE_NOT_FOUND, with the request id every answer carries (the client's, or a new one)."""
        request_id = _request_id(scope, self.proxy.id_header, self.proxy.new_request_id)
        await send_error(send, RouteNotFoundError(), request_id, self.proxy.id_header)

    async def _dispatch(self, scope: dict, receive: Any, send: Any) -> None:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if self.admin_port is not None and (scope.get("server") or ("", None))[1] == self.admin_port:
            if raw_path.startswith(_OPERATOR_PATHS):  # the admin listener: nothing else
                await self.starlette(scope, receive, send)
            else:
                await self._not_found(scope, send)
            return
        route, path_model = self.routes.match(raw_path)
        if route is not None:
            await self.proxy.handle(scope, receive, send, route, path_model)
            return
        model_id = model_id_from_models_path(raw_path)
        if model_id is not False:
            await self.proxy.models(scope, receive, send, model_id)  # type: ignore[arg-type]
            return
        if raw_path.startswith(self.public_paths):
            await self.starlette(scope, receive, send)
            return
        await self._not_found(scope, send)


def create_app(config: Config, config_path: str | None = None, *, own_process: bool = False) -> GatewayApp:
    return GatewayApp(config, config_path, own_process=own_process)
