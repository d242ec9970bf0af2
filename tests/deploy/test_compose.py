"""deploy/compose.yaml (and the Prometheus / Grafana files it mounts).

No Docker engine and no compose plugin here, so `docker compose config` cannot run: the
file is validated against the Compose Specification's JSON schema (check-jsonschema's
bundled copy) and then checked for what `docker compose up` needs to work as one piece.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import ENVIRONMENT, parse_config
from tests.deploy.tools import DEPLOY, ROOT, check, tool

pytestmark = pytest.mark.unit

COMPOSE = DEPLOY / "compose.yaml"
GRAFANA = DEPLOY / "grafana"

_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: object) -> object:
    """Compose's `${NAME:-default}` with an empty environment: the defaults."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()))


def test_compose_spec_schema() -> None:
    check([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])


def test_the_services(compose: dict) -> None:
    assert set(compose["services"]) == {"gateway", "litellm", "postgres", "redis", "prometheus", "grafana"}
    published = {name: svc.get("ports", []) for name, svc in compose["services"].items()}
    assert published["gateway"] == ["8080:8080"]
    # models are reachable only through the gateway
    assert published["litellm"] == published["postgres"] == published["redis"] == []


def test_the_gateway_is_built_from_the_repository(compose: dict) -> None:
    build = compose["services"]["gateway"]["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"


def test_the_gateway_environment(compose: dict) -> None:
    services = compose["services"]
    env = services["gateway"]["environment"]
    assert set(env) <= set(ENVIRONMENT), set(env) - set(ENVIRONMENT)
    assert env["LITELLM_AUTH"] == "service_key"
    assert env["LITELLM_SYNC_USERS"] == "false", "the demo LiteLLM has no database"
    for name in ("DATABASE_URL", "REDIS_URL", "LITELLM_URL", "LITELLM_API_KEY", "GATEWAY_ADMIN_TOKEN"):
        assert env[name], name
    config = parse_config({}, env)
    assert config.litellm.sync_users is False and config.litellm.auth == "service_key"
    assert config.server.workers >= 1 and config.server.port == 8080

    # every URL names a service of this file, on the port that service listens on
    database = urlsplit(env["DATABASE_URL"])
    postgres = services["postgres"]["environment"]
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert (database.username, database.password, database.path) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        "/" + postgres["POSTGRES_DB"],
    )
    assert urlsplit(env["REDIS_URL"]).hostname == "redis"
    litellm_url = urlsplit(env["LITELLM_URL"])
    command = services["litellm"]["command"]
    assert litellm_url.hostname == "litellm"
    assert str(litellm_url.port) == command[command.index("--port") + 1]
    # service_key mode: the gateway calls LiteLLM with its master key
    assert env["LITELLM_API_KEY"] == services["litellm"]["environment"]["LITELLM_MASTER_KEY"]


def test_startup_order_waits_for_healthy_dependencies(compose: dict) -> None:
    services = compose["services"]
    depends = services["gateway"]["depends_on"]
    assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
    for name in ("postgres", "redis", "litellm"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"


def bind_mounts(compose: dict) -> list[tuple[str, Path, str]]:
    mounts = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                mounts.append((name, (COMPOSE.parent / source).resolve(), target))
    return mounts


def test_every_mounted_file_exists(compose: dict) -> None:
    mounts = bind_mounts(compose)
    assert len(mounts) == 6
    missing = [(name, str(path)) for name, path, _ in mounts if not path.exists()]
    assert missing == []


def test_litellm_serves_the_demo_config(compose: dict) -> None:
    litellm = compose["services"]["litellm"]
    command = litellm["command"]
    target = command[command.index("--config") + 1]
    (source,) = [path for name, path, t in bind_mounts(compose) if name == "litellm" and t == target]
    assert source == DEPLOY / "litellm/config.yaml"
    assert litellm["environment"]["LITELLM_LOCAL_MODEL_COST_MAP"] == "True", "no network for the cost map"


def test_prometheus_scrapes_the_gateway_and_loads_the_alerts(compose: dict) -> None:
    prometheus = compose["services"]["prometheus"]
    mounted = {t: path for name, path, t in bind_mounts(compose) if name == "prometheus"}
    config_file = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    assert mounted[config_file] == DEPLOY / "prometheus/prometheus.yml"
    config = yaml.safe_load(mounted[config_file].read_text())
    for rule_file in config["rule_files"]:
        in_container = str(Path(config_file).parent / rule_file)
        assert mounted[in_container] == DEPLOY / "prometheus" / rule_file
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "maas-gateway"]
    assert job["static_configs"][0]["targets"] == ["gateway:8080"]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_grafana_provisioning(compose: dict) -> None:
    mounted = {t: path for name, path, t in bind_mounts(compose) if name == "grafana"}
    assert mounted["/etc/grafana/provisioning/datasources"] == GRAFANA / "provisioning/datasources"
    assert mounted["/etc/grafana/provisioning/dashboards"] == GRAFANA / "provisioning/dashboards"
    (datasource,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["uid"] == "prometheus"
    assert urlsplit(datasource["url"]).hostname == "prometheus" and urlsplit(datasource["url"]).port == 9090
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/maas-gateway.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    assert mounted[provider["options"]["path"]] == GRAFANA / "dashboards"


def _datasource_uids(node: object) -> set[str]:
    found = set()
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and "uid" in source:
            found.add(source["uid"])
        elif isinstance(source, str):
            found.add(source)
        for value in node.values():
            found |= _datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= _datasource_uids(value)
    return found


def test_the_dashboards_use_the_provisioned_datasource() -> None:
    """The dashboards (deploy/grafana/dashboards/*.json) are provisioned as they are: each
    panel's datasource must be the provisioned one (uid `prometheus`, or its name), a
    datasource variable of the dashboard, or Grafana's built-in annotations source.
    An exported dashboard's `${DS_...}` inputs are not resolved by file provisioning."""
    (provisioned,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())["datasources"]
    dashboards = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert dashboards, "deploy/grafana/dashboards/ holds no dashboard"
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert "title" in dashboard and "panels" in dashboard, path.name
        assert dashboard.get("id") is None, f"{path.name}: a provisioned dashboard carries no numeric id"
        variables = {
            v["name"] for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "datasource"
        }
        allowed = {provisioned["uid"], provisioned["name"], "-- Grafana --", "grafana"}
        allowed |= {f"${name}" for name in variables} | {f"${{{name}}}" for name in variables}
        unknown = _datasource_uids(dashboard) - allowed
        assert unknown == set(), f"{path.name}: datasources {unknown} are neither provisioned nor dashboard variables"
