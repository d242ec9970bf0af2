"""Throwaway local Postgres, Redis and LiteLLM servers for `make run` and the tests.

Every server binds 127.0.0.1 on a free port (unless one is given), keeps all its files in
the `workdir` it is handed, runs in its own session (so a Ctrl-C in the parent's terminal
reaches only the parent) and is stopped through `Service.stop()`. Nothing happens at import.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

_PG_DATABASE = "maas"
_PG_USER = "postgres"  # the superuser initdb creates; also the OS user when we run as root


@dataclass(frozen=True)
class Service:
    name: str  # "postgres" | "redis" | "litellm"
    url: str
    process: subprocess.Popen
    workdir: Path
    # Starts the same kind of service again, given a port: see restart().
    relaunch: Callable[[int], Service] = field(repr=False, compare=False, kw_only=True)

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port

    def stop(self, timeout: float = 10) -> None:
        """Graceful stop of the leader, SIGKILL of the whole group after `timeout`; idempotent."""
        if self.process.poll() is not None:
            return
        # Postgres: SIGINT is "fast shutdown"; its SIGTERM ("smart") waits for clients to leave.
        self.process.send_signal(signal.SIGINT if self.name == "postgres" else signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group now (fault injection), and reap the leader."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # pgid == pid: start_new_session
            except ProcessLookupError:
                pass
        self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def restart(service: Service) -> Service:
    """Start the same kind of service again on the same port and workdir (its data is kept)."""
    service.stop()
    return service.relaunch(service.port)


# --- helpers -------------------------------------------------------------------------------


def _spawn(argv: list[str], workdir: Path, log_name: str, **popen_kwargs) -> subprocess.Popen:
    with open(workdir / log_name, "ab") as log:
        return subprocess.Popen(
            argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, **popen_kwargs,
        )


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _wait_ready(service: Service, is_ready: Callable[[], bool], log: Path, timeout: float) -> None:
    """Poll `is_ready` until it holds; on death or deadline stop the service and raise."""
    deadline = time.monotonic() + timeout
    while True:
        if service.process.poll() is not None:
            problem = f"exited with status {service.process.returncode}"
        elif is_ready():
            return
        elif time.monotonic() > deadline:
            problem = f"was not ready after {timeout:.0f} s"
        else:
            time.sleep(0.05)
            continue
        service.stop(timeout=5)
        raise RuntimeError(f"{service.name} on {service.url} {problem}; {log}:\n{_log_tail(log)}")


def _tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


# --- Postgres ------------------------------------------------------------------------------


def _pg_bindir() -> Path:
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidates.append(Path(bindir.stdout.strip()))
    # Debian keeps the server binaries out of PATH, one directory per major version.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions), reverse=True,
                         key=lambda p: [int(n) for n in p.parent.name.split(".") if n.isdigit()])
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    try:  # the `pgserver` wheel bundles a whole Postgres
        from pgserver._commands import POSTGRES_BIN_PATH  # type: ignore[import-not-found]

        candidates.append(Path(POSTGRES_BIN_PATH))
    except ImportError:
        pass
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise RuntimeError("no Postgres server binaries found: apt-get install postgresql "
                       "(or pip install pgserver)")


def _usable_by(user: str, directory: Path) -> bool:
    # Asked of the OS as that user: os.access() as root would always say yes.
    check = ["test", "-w", str(directory), "-a", "-x", str(directory)]
    return subprocess.run(check, user=user, capture_output=True).returncode == 0


def start_postgres(workdir: Path, port: int | None = None) -> Service:
    bindir = _pg_bindir()
    port = port or free_port()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    as_user: dict = {}
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(workdir, _PG_USER, _PG_USER)
        if not _usable_by(_PG_USER, workdir):  # a parent directory it cannot traverse
            workdir = Path(tempfile.mkdtemp(prefix="devservices-pg-", dir="/tmp"))
            shutil.chown(workdir, _PG_USER, _PG_USER)
        as_user = {"user": _PG_USER, "group": _PG_USER, "extra_groups": []}
    pgdata = workdir / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        initdb = [str(bindir / "initdb"), "-D", str(pgdata), "-U", _PG_USER, "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync"]
        result = subprocess.run(initdb, cwd=workdir, capture_output=True, text=True, **as_user)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")
    # Unix socket paths are limited to ~107 bytes; deep tmp dirs go TCP-only.
    sockets = str(workdir) if len(str(workdir)) < 80 else ""
    argv = [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port), "-h", "127.0.0.1",
            "-k", sockets, "-F", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200"]
    service = Service(
        "postgres", f"postgresql://{_PG_USER}@127.0.0.1:{port}/{_PG_DATABASE}",
        _spawn(argv, workdir, "postgres.log", **as_user), workdir,
        relaunch=functools.partial(start_postgres, workdir),
    )
    client = ["-h", "127.0.0.1", "-p", str(port), "-U", _PG_USER]
    isready = [str(bindir / "pg_isready"), *client, "-d", "postgres", "-q"]
    _wait_ready(service, lambda: _tcp_open(port) and subprocess.run(isready).returncode == 0,
                workdir / "postgres.log", timeout=60)
    created = subprocess.run([str(bindir / "createdb"), *client, _PG_DATABASE],
                             capture_output=True, text=True)
    if created.returncode != 0 and "already exists" not in created.stderr:
        service.stop()
        raise RuntimeError(f"createdb {_PG_DATABASE} failed: {created.stderr}")
    return service


# --- Redis ---------------------------------------------------------------------------------


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(workdir: Path, port: int | None = None) -> Service:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    port = port or free_port()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]
    service = Service("redis", f"redis://127.0.0.1:{port}/0",
                      _spawn(argv, workdir, "redis.log"), workdir,
                      relaunch=functools.partial(start_redis, workdir))
    _wait_ready(service, lambda: _redis_pong(port), workdir / "redis.log", timeout=30)
    return service


# --- LiteLLM -------------------------------------------------------------------------------


def _litellm_alive(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env
    try:
        with opener.open(f"{url}/health/liveliness", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_litellm(config_path: Path, workdir: Path, port: int | None = None,
                  master_key: str | None = None) -> Service:
    port = port or free_port()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # The console script of the running venv; not resolved, so the venv's symlinks hold.
    script = Path(sys.executable).parent / "litellm"
    launcher = [str(script)] if script.is_file() else [
        sys.executable, "-c", "import sys; from litellm import run_server; sys.exit(run_server())"]
    argv = [*launcher, "--config", str(Path(config_path).resolve()),
            "--host", "127.0.0.1", "--port", str(port)]
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # else LiteLLM would run its Prisma migrations on our DB
    env.pop("LITELLM_MASTER_KEY", None)
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the price list
               DISABLE_SCHEMA_UPDATE="true", LITELLM_LOG="ERROR",
               # Recent LiteLLM refuses to boot with no master key or a well-known one
               # ("sk-1234"); this loopback-only throwaway proxy may run either way.
               LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true")
    if master_key is not None:
        env["LITELLM_MASTER_KEY"] = master_key
    url = f"http://127.0.0.1:{port}"
    service = Service("litellm", url, _spawn(argv, workdir, "litellm.log", env=env), workdir,
                      relaunch=functools.partial(start_litellm, config_path, workdir,
                                                 master_key=master_key))
    _wait_ready(service, lambda: _litellm_alive(url), workdir / "litellm.log", timeout=90)
    return service


# --- a local OpenID Connect provider (console sign-in) ---------------------------------------

OIDC_PROVIDER_DIR = Path(__file__).resolve().parents[2] / "scripts" / "oidc"


def _oidc_ready(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/.well-known/openid-configuration", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _announced_issuer(log: Path, offset: int) -> str | None:
    """The issuer the provider wrote to its log after `offset` ("... ready at ISSUER"), or None yet."""
    try:
        with open(log, "rb") as file:
            file.seek(offset)
            found = re.search(rb"oidc provider ready at (http://\S+)", file.read())
    except OSError:
        return None
    return found.group(1).decode() if found else None


def start_oidc_provider(workdir: Path, clients: list[dict], users: list[dict], port: int | None = None,
                        attempts: int = 2, end_session: bool = True) -> Service:
    """panva's oidc-provider (scripts/oidc, `npm ci --prefix scripts/oidc`) with these clients
    ({client_id, client_secret, redirect_uris, post_logout_redirect_uris}) and users ({sub,
    username, password, email, name, groups}); the Service's url is the issuer. `end_session`
    False: no end_session_endpoint (sign-out stays local, as with OpenShift's OAuth server).

    Node binds the port itself (port 0 unless one is given, as restart() does) and writes the
    issuer to its log once it serves it: no port is chosen here and bound later by another
    process, and nothing is asked of a port before the provider listens on it. It starts in about
    0.5 s, 1-4 s with both cores busy (some 820 starts measured here, 150 of them in a pytest
    session beside LiteLLM and a serving gateway: none failed, the slowest 3.7 s). Once in ~25 suite runs a start had not answered after 30 s, its cause not found: each
    step is in the log with its time, and without a fixed `port` such a start is stopped and made
    once more, said on stderr."""
    import json

    if port is None and attempts > 1:
        try:
            return start_oidc_provider(workdir, clients, users, attempts=1, end_session=end_session)
        except RuntimeError as exc:
            print(f"devservices: the OIDC provider did not start, trying once more: {exc}", file=sys.stderr)
            return start_oidc_provider(workdir, clients, users, attempts=1, end_session=end_session)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = workdir / "oidc-settings.json"
    settings.write_text(json.dumps({"port": port or 0, "clients": clients, "users": users,
                                    "end_session": end_session}))
    settings.chmod(0o600)
    log = workdir / "oidc.log"
    offset = log.stat().st_size if log.exists() else 0
    node = shutil.which("node") or "node"
    argv = [node, str(OIDC_PROVIDER_DIR / "provider.mjs"), str(settings)]
    starting = Service("oidc", f"http://127.0.0.1:{port or 0}", _spawn(argv, workdir, "oidc.log"), workdir,
                       relaunch=functools.partial(start_oidc_provider, workdir, clients, users, end_session=end_session))
    issuer: str | None = None

    def serving() -> bool:
        nonlocal issuer
        issuer = issuer or _announced_issuer(log, offset)
        return issuer is not None and _oidc_ready(issuer)

    _wait_ready(starting, serving, log, timeout=30)
    assert issuer is not None
    return dataclasses.replace(starting, url=issuer)
