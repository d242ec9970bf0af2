"""The Dockerfile: hadolint, the properties the issue asks for, and its HEALTHCHECK run for real.

No Docker engine runs here, so the image is never built in tests: the Dockerfile is linted
and parsed, and the command it runs (`maas-gateway serve`, workers from GATEWAY_WORKERS)
and its HEALTHCHECK command are exercised against the gateway served from this checkout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, ROOT, check, tool

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "cc ", "clang", "curl", "wget", "git")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Dockerfile -> (global ARG defaults, stages); continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            stage_name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, stage_name))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def healthcheck_command(final: Stage) -> list[str]:
    (healthcheck,) = final.all("HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    return json.loads(command)


@pytest.mark.unit
def test_hadolint_passes() -> None:
    check([tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)])


@pytest.mark.unit
def test_multi_stage_on_python_311_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert all(s.base == "python:3.11-slim" for s in stages), [s.base for s in stages]
    build, final = stages[0], stages[-1]
    assert build.name and final.name is None
    # the final stage takes only the built virtualenv from the build stage
    copies = final.all("COPY")
    assert copies and all(c.startswith(f"--from={build.name} ") for c in copies), copies


@pytest.mark.unit
def test_no_build_tools_in_the_final_image(stages: list[Stage]) -> None:
    final = stages[-1]
    for run in final.all("RUN"):
        assert "apt-get install" not in run and "pip install" not in run, run
        assert not any(t in run for t in BUILD_TOOLS), run
    # and the virtualenv carries no pip: it is made --without-pip and installed from outside
    (build_run,) = stages[0].all("RUN")
    assert "venv --without-pip" in build_run


@pytest.mark.unit
def test_runs_as_a_numeric_non_root_user_under_any_uid(stages: list[Stage]) -> None:
    final = stages[-1]
    (user,) = final.all("USER")
    assert user.isdigit() and int(user) != 0, "numeric, so Kubernetes can check runAsNonRoot"
    (run,) = final.all("RUN")
    assert f"--uid {user} --gid 0" in run, "primary group 0, as OpenShift's arbitrary UIDs have"
    assert "chmod -R g=u" in run and "chown -R 1001:0" in run, "its writable directory is group-0 writable"
    env = " ".join(final.all("ENV"))
    assert "HOME=/tmp" in env, "an arbitrary UID has no home directory"
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "no .pyc writes on a read-only root filesystem"
    assert "GATEWAY_HOST=0.0.0.0" in env, "reachable from outside the container"
    assert "GATEWAY_WORKERS" not in env, "workers come from the deployment's environment or config.yaml"


@pytest.mark.unit
def test_entrypoint_is_maas_gateway_serve(stages: list[Stage]) -> None:
    final = stages[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    assert Path(json.loads(entrypoint)[0]).name == "maas-gateway"
    assert json.loads(cmd) == ["serve"]
    assert final.all("EXPOSE") == ["8080"]


@pytest.mark.unit
def test_healthcheck_uses_python_on_health_live(stages: list[Stage]) -> None:
    command = healthcheck_command(stages[-1])
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2] and "/health/live" in command[2]
    assert "curl" not in " ".join(command)


@pytest.mark.unit
def test_dockerignore_lets_in_only_what_the_build_copies(stages: list[Stage]) -> None:
    lines = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for copy in stages[0].all("COPY"):
        copied.update(shlex.split(copy)[:-1])
    assert copied == allowed
    assert [path for path in copied if not (ROOT / path).exists()] == [], "the build copies what is not there"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.integration
def test_serve_with_workers_from_the_environment_answers_the_healthcheck(stages: list[Stage]) -> None:
    """What the container runs: `maas-gateway serve --config <the ConfigMap's config.yaml>`,
    GATEWAY_WORKERS=2, HOME=/tmp, from an unwritable directory; its HEALTHCHECK must pass."""
    port = _free_port()
    maas_gateway = Path(sys.executable).parent / "maas-gateway"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "2",
        "LITELLM_URL": "http://127.0.0.1:9",
        "LITELLM_API_KEY": "sk-from-the-secret",  # the Deployment's, from the Secret: service_key mode needs it
        "INTEGRATION_HEALTH_CHECK": "false",
    }
    command = healthcheck_command(stages[-1])
    command[0] = sys.executable  # the image's `python` is its virtualenv's
    with tempfile.TemporaryDirectory() as cwd, tempfile.TemporaryDirectory() as tmp:
        env["TMPDIR"] = tmp  # where serve makes its metrics directory: /tmp in the image
        os.chmod(cwd, 0o555)
        server = subprocess.Popen(
            [str(maas_gateway), "serve", "--config", str(DEPLOY / "kubernetes/base/config.yaml")],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                probe = subprocess.run(command, env=env, capture_output=True, timeout=10)
                if probe.returncode == 0:
                    break
                assert server.poll() is None, f"serve exited {server.returncode}: {server.stdout.read().decode()}"
                assert time.monotonic() < deadline, f"the HEALTHCHECK never passed: {probe.stderr.decode()[-500:]}"
                time.sleep(0.3)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5) as response:
                assert json.loads(response.read()) == {"status": "alive"}
            # uvicorn's supervisor plus the two workers GATEWAY_WORKERS asked for
            workers = [
                pid
                for pid in _children(server.pid)
                if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()
                and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            assert len(workers) == 2, workers
            # several workers share metrics through files under TMPDIR: an emptyDir /tmp in Kubernetes
            assert list(Path(tmp).glob("maas-gateway-metrics-*/*.db")), "no multiprocess metrics files under TMPDIR"
            # and the HEALTHCHECK fails when nothing answers
            stopped = subprocess.run(command, env={**env, "GATEWAY_PORT": str(_free_port())}, capture_output=True, timeout=10)
            assert stopped.returncode != 0
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            server.stdout.close()
