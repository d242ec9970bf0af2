"""The `maas-gateway` command.

    maas-gateway serve [--config config.yaml] [--host H] [--port P] [--workers N]
    maas-gateway migrate [--config config.yaml] [--litemaas-triggers | --remove-litemaas-triggers]
    maas-gateway dev [--litemaas]    (make run: starts what is missing, seeds a demo key, serves)
    maas-gateway users|models|subscriptions|keys|sync ...   (gateway/admin/cli.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from typing import Sequence

from gateway.admin.cli import register as register_admin_commands
from gateway.config import CONFIG_ENV, ConfigError, check_serving, load_config

STARTUP_FAILURE = 3  # uvicorn's exit code when the server could not start


def app_factory():
    """uvicorn's factory (one call per worker): the app from the config named in the environment."""
    from gateway.app import create_app
    from gateway.ops.logs import configure

    config = load_config(os.environ.get(CONFIG_ENV) or None)
    configure(config.logging.level)
    return create_app(config)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from gateway.serving import listeners

    environ = dict(os.environ)
    for flag, name in (("host", "GATEWAY_HOST"), ("port", "GATEWAY_PORT"), ("workers", "GATEWAY_WORKERS")):
        value = getattr(args, flag)
        if value is not None:
            environ[name] = str(value)
    config = load_config(args.config, environ)  # fail fast, before any worker starts
    check_serving(config)
    os.environ.update({k: v for k, v in environ.items() if k.startswith("GATEWAY_")})
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    workers = config.server.workers
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="maas-gateway-metrics-")
    server = config.server
    uvicorn_config = uvicorn.Config(
        "gateway.cli:app_factory",
        factory=True,
        host=server.host,
        port=server.port,
        workers=workers,
        loop="uvloop",
        http=listeners.protocol(server),  # httptools, with header and body read deadlines
        lifespan="on",
        access_log=False,  # the proxy writes its own access line
        log_config=None,
        proxy_headers=False,  # X-Forwarded-For is judged by the gateway (server.trusted_proxies), never by uvicorn
        server_header=False,
        timeout_keep_alive=server.keep_alive_timeout_seconds,  # type: ignore[arg-type]
        # SIGTERM drains (gateway/runtime/drain.py): uvicorn's shutdown starts drain_delay_seconds after
        # the signal, and gives in-flight requests the rest of drain_seconds
        timeout_graceful_shutdown=max(0.1, config.server.drain_seconds - config.server.drain_delay_seconds),
    )
    sockets = [listeners.bind(server.host, server.port)]
    if server.admin_port is not None:
        sockets.append(listeners.bind(server.host, server.admin_port))
    # uvicorn.run() binds one socket; with server.admin_port there are two: its own steps, with both.
    if workers > 1:
        Multiprocess(uvicorn_config, sockets=sockets).run()
        return 0
    uvicorn_server = uvicorn.Server(uvicorn_config)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn_server.run(sockets=sockets)
    return 0 if uvicorn_server.started else STARTUP_FAILURE


def _migrate(args: argparse.Namespace) -> int:
    from gateway.store import litemaas

    config = load_config(args.config)
    if not config.database.url:
        raise ConfigError("DATABASE_URL is not set: nothing to migrate")
    triggers = True if args.litemaas_triggers else False if args.remove_litemaas_triggers else None
    if triggers is not None and config.database.schema != "litemaas":
        raise ConfigError("database.schema: the LiteMaaS triggers need database.schema litemaas (GATEWAY_DATABASE_SCHEMA)")
    applied = asyncio.run(litemaas.prepare_database(config.database.url, config.database, apply=True, triggers=triggers))
    print(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "schema is up to date")
    if triggers is not None:
        print("NOTIFY triggers installed on LiteMaaS's tables" if triggers else "NOTIFY triggers removed from LiteMaaS's tables")
    return 0


def _dev(args: argparse.Namespace) -> int:
    from gateway.dev.demo import run_dev

    return run_dev(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maas-gateway", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the gateway")
    serve.add_argument("--config", help="path to config.yaml (default: embedded defaults)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="apply the database schema (idempotent)")
    migrate.add_argument("--config")
    triggers = migrate.add_mutually_exclusive_group()
    triggers.add_argument("--litemaas-triggers", action="store_true",
                          help="database.schema litemaas: also install the NOTIFY triggers on LiteMaaS's tables")
    triggers.add_argument("--remove-litemaas-triggers", action="store_true",
                          help="database.schema litemaas: remove those triggers (LiteMaaS's tables as they were)")
    migrate.set_defaults(handler=_migrate)

    dev = commands.add_parser("dev", help="start missing services, seed a demo key and serve (make run)")
    dev.add_argument("--config")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--litemaas", action="store_true",
                     help="on a LiteMaaS-shaped database (its schema loaded into an empty one), database.schema litemaas")
    dev.set_defaults(handler=_dev)

    register_admin_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"maas-gateway: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
