"""Fixtures of the admin API tests (the LiteLLM double, an admin client), shared here."""

from tests.admin_support import admin, double, litellm_double_server  # noqa: F401 - fixtures
from tests.litemaas_support import conn, litemaas_url  # noqa: F401 - fixtures (LiteMaaS's schema)
