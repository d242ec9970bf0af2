"""Real processes for the multi-instance tests: `maas-gateway serve` and Debian's haproxy.

Each runs in a subprocess on a free loopback port and logs to a file in the test's tmp_path
(a pipe could fill up and stall it). `Gateway(port=...)` starts an instance on a port an
earlier one had (a rolling restart); `Haproxy` balances over instances by `/health/ready`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import signal
import sys
from pathlib import Path

import aiohttp
import yaml

from gateway.dev.services import free_port
from tests.support import MASTER_KEY, eventually, wait_until_serving

CLI = [sys.executable, "-m", "gateway.cli"]


def gateway_env(postgres_url: str, redis_url: str, litellm_url: str) -> dict[str, str]:
    """What an instance needs from the session: its Postgres, Redis and LiteLLM (or the fake)."""
    return {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "LITELLM_URL": litellm_url,
            "LITELLM_API_KEY": MASTER_KEY}


class Gateway:
    """`maas-gateway serve` in a subprocess, with `server` as its config's server section."""

    def __init__(self, tmp_path: Path, env: dict[str, str], server: dict, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "config.yaml"
        self.config.write_text(yaml.safe_dump({"server": server, "litellm": {"sync_users": False}}))
        self.log = tmp_path / "gateway.log"
        self.env = env
        self.process: asyncio.subprocess.Process | None = None

    async def spawn(self) -> None:
        """Start the process; `start` also waits until it serves."""
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *CLI, "serve", "--config", str(self.config), "--port", str(self.port),
                env={**os.environ, **self.env}, stdout=log, stderr=log,
            )

    async def start(self, http: aiohttp.ClientSession, timeout: float = 30) -> None:
        await self.spawn()
        await wait_until_serving(http, self.url, timeout=timeout)

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


class Haproxy:
    """haproxy (foreground) with `config` (a haproxy.cfg text); its stats page tells server states."""

    def __init__(self, tmp_path: Path, config: str, stats_port: int) -> None:
        self.config = tmp_path / "haproxy.cfg"
        self.config.write_text(config)
        self.log = tmp_path / "haproxy.log"
        self.stats_url = f"http://127.0.0.1:{stats_port}/stats;csv"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"  # Debian's, from scripts/system-deps.sh
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                binary, "-db", "-f", str(self.config), stdout=log, stderr=log,
            )

    async def server_states(self, http: aiohttp.ClientSession) -> dict[str, str]:
        """Server name -> haproxy's status of it ("UP", "DOWN", "UP 1/2", ...); {} until it answers."""
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(f"haproxy exited ({self.process.returncode}): {self.log.read_text()}")
        try:
            async with http.get(self.stats_url) as r:
                text = await r.text()
        except aiohttp.ClientConnectionError:
            return {}
        rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
        return {row["svname"]: row["status"] for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")}

    async def wait_for(self, http: aiohttp.ClientSession, server: str, status: str, timeout: float) -> float:
        """Poll the stats until `server` is `status`; returns the seconds it took."""

        async def reached() -> bool:
            return (await self.server_states(http)).get(server) == status

        return await eventually(reached, timeout=timeout, interval=0.02)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
