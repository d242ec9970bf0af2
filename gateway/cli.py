"""The `maas-gateway` command (click).

    maas-gateway serve [--config config.yaml] [--host H] [--port P] [--workers N]
    maas-gateway migrate [--config config.yaml] [--litemaas-triggers | --remove-litemaas-triggers]
    maas-gateway dev [--litemaas]    (make run: starts what is missing, seeds a demo key, serves)
    maas-gateway users|models|subscriptions|keys|usage|sync ...   (gateway/admin/cli.py)

Exit status: 0 done, 1 an admin command's error (gateway/admin/cli.py), 2 a usage or
configuration error, 3 the server could not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from typing import Sequence

import click

from gateway.admin.cli import ADMIN_COMMANDS, CONFIG_OPTION
from gateway.config import CONFIG_ENV, ConfigError, check_serving, load_config

STARTUP_FAILURE = 3  # uvicorn's exit code when the server could not start
USAGE_ERROR = 2  # click's, for a wrong option; also a configuration error


def app_factory():
    """uvicorn's factory (one call per worker): the app from the config named in the environment."""
    from gateway.app import create_app
    from gateway.ops.logs import configure

    config = load_config(os.environ.get(CONFIG_ENV) or None)
    configure(config.logging.level)
    return create_app(config, own_process=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """maas-gateway: an enforcing reverse proxy in front of LiteLLM, and its admin commands.

    Settings come from config.yaml (--config) and the environment (DATABASE_URL, LITELLM_URL,
    LITELLM_API_KEY, REDIS_URL, ...: see the README's configuration table).
    """


@cli.command()
@CONFIG_OPTION
@click.option("--host", help="address to listen on (server.host, GATEWAY_HOST)")
@click.option("--port", type=int, help="port to listen on (server.port, GATEWAY_PORT)")
@click.option("--workers", type=click.IntRange(min=1), help="worker processes (server.workers, GATEWAY_WORKERS)")
def serve(config_path: str | None, host: str | None, port: int | None, workers: int | None) -> int:
    """Serve the gateway.

    The schema is applied first unless server.migrate_on_start is false."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from gateway.serving import listeners

    environ = dict(os.environ)
    for name, value in (("GATEWAY_HOST", host), ("GATEWAY_PORT", port), ("GATEWAY_WORKERS", workers)):
        if value is not None:
            environ[name] = str(value)
    config = load_config(config_path, environ)  # fail fast, before any worker starts
    check_serving(config)
    os.environ.update({k: v for k, v in environ.items() if k.startswith("GATEWAY_")})
    if config_path:
        os.environ[CONFIG_ENV] = os.path.abspath(config_path)
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


@cli.command()
@CONFIG_OPTION
@click.option("--litemaas-triggers", "install", is_flag=True,
              help="database.schema litemaas: also install the NOTIFY triggers on LiteMaaS's tables")
@click.option("--remove-litemaas-triggers", "remove", is_flag=True,
              help="database.schema litemaas: remove those triggers (LiteMaaS's tables as they were)")
def migrate(config_path: str | None, install: bool, remove: bool) -> int:
    """Apply the database schema (idempotent)."""
    from gateway.store import litemaas

    if install and remove:
        raise click.UsageError("--litemaas-triggers and --remove-litemaas-triggers exclude each other")
    config = load_config(config_path)
    if not config.database.url:
        raise ConfigError("DATABASE_URL is not set: nothing to migrate")
    triggers = True if install else False if remove else None
    if triggers is not None and config.database.schema != "litemaas":
        raise ConfigError("database.schema: the LiteMaaS triggers need database.schema litemaas (GATEWAY_DATABASE_SCHEMA)")
    applied = asyncio.run(litemaas.prepare_database(config.database.url, config.database, apply=True, triggers=triggers))
    print(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "schema is up to date")
    if triggers is not None:
        print("NOTIFY triggers installed on LiteMaaS's tables" if triggers else "NOTIFY triggers removed from LiteMaaS's tables")
    return 0


@cli.command()
@CONFIG_OPTION
@click.option("--port", type=int, default=8080, show_default=True, help="port to serve on")
@click.option("--litemaas", is_flag=True,
              help="on a LiteMaaS-shaped database (its schema loaded into an empty one), database.schema litemaas")
def dev(config_path: str | None, port: int, litemaas: bool) -> int:
    """Serve a demo gateway on this machine (make run).

    Starts what is missing (Postgres, LiteLLM with mock models), seeds a demo key and
    serves; Ctrl-C stops everything it started."""
    from gateway.dev.demo import run_dev

    return run_dev(config_path, port, litemaas)


for _command in ADMIN_COMMANDS:
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: each command returns its exit status; click's own errors exit 2."""
    try:
        return cli.main(args=argv, prog_name="maas-gateway", standalone_mode=False) or 0
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C at a prompt
        return 1
    except ConfigError as exc:
        print(f"maas-gateway: configuration error: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
