"""The real LiteLLM proxy, one per test session, with tests/e2e/litellm-test.yaml's models.

`slow-model` answers after SLOW_SECONDS; `broken-backend` points at a closed loopback port
(BROKEN_API_BASE) with PROVIDER_KEY as its provider key: neither may ever reach a client.
LiteLLM writes the end user of each successful call to `attribution_log` (tests/e2e/attribution_log.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from gateway.dev import services as devservices
from tests.support import MASTER_KEY

LITELLM_TEST_CONFIG = Path(__file__).resolve().parent / "litellm-test.yaml"
SLOW_SECONDS = 3.0  # mock_delay of slow-model in litellm-test.yaml
PROVIDER_KEY = "sk-provider-secret-e2e-5f1c"


@pytest.fixture(scope="session")
def broken_api_base() -> str:
    """A loopback URL on which nothing listens (free_port() found it free; nothing binds it)."""
    return f"http://127.0.0.1:{devservices.free_port()}/v1"


@pytest.fixture(scope="session")
def litellm_workdir() -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="maas-litellm-"))
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def attribution_log(litellm_workdir: Path) -> Path:
    """One JSON line per call LiteLLM served: {"end_user", "metadata_end_user", "model_group", "call_id"}."""
    return litellm_workdir / "attribution.jsonl"


@pytest.fixture(scope="session")
def litellm(broken_api_base: str, litellm_workdir: Path, attribution_log: Path) -> Iterator[devservices.Service]:
    workdir = litellm_workdir
    names = ("E2E_BROKEN_API_BASE", "E2E_PROVIDER_KEY", "E2E_ATTRIBUTION_LOG")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(E2E_BROKEN_API_BASE=broken_api_base, E2E_PROVIDER_KEY=PROVIDER_KEY,
                      E2E_ATTRIBUTION_LOG=str(attribution_log))
    try:
        service = devservices.start_litellm(LITELLM_TEST_CONFIG, workdir, master_key=MASTER_KEY)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield service
    service.stop()
