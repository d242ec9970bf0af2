"""Fixtures of the integration tests: the admin API's (the LiteLLM double, an admin client), LiteMaaS's
schema, and a work directory for services a test starts itself."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.admin_support import admin, double, litellm_double_server  # noqa: F401 - fixtures
from tests.litemaas_support import conn, litemaas_url  # noqa: F401 - fixtures (LiteMaaS's schema)


@pytest.fixture
def workdir():
    """A directory a service started by the test (Postgres, Redis) writes to, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="maas-test-"))
    os.chmod(path, 0o755)  # Postgres runs as its own user under it
    yield path
    shutil.rmtree(path, ignore_errors=True)
