"""deploy/kubernetes: the kustomize base and the OpenShift overlay, rendered and validated.

Rendering: kubectl's built-in kustomize. Validation, every rendered manifest:
- built-in kinds: kubernetes-validate's bundled Kubernetes schemas, strict (unknown fields
  are errors), for the oldest Kubernetes we support (1.29, OpenShift 4.16) and the newest
  it bundles;
- ServiceMonitor, PrometheusRule: the schemas generated from the Prometheus Operator's
  CRDs (npm @kubernetes-models/prometheus-operator, through validate_crds.mjs);
- Route: tests/deploy/schemas/route.openshift.io-v1-route.json (no package ships one),
  its metadata against Kubernetes' ObjectMeta schema.
A kind none of these knows fails the test. Then the properties the issues ask for.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from gateway.config import ENVIRONMENT, parse_config
from tests.deploy import prometheusrule
from tests.deploy.tools import DEPLOY, HERE, kustomize, load_all, validate_prometheus_operator

pytestmark = pytest.mark.unit

BASE = DEPLOY / "kubernetes/base"
OPENSHIFT = DEPLOY / "kubernetes/overlays/openshift"
LITEMAAS = DEPLOY / "kubernetes/overlays/litemaas"
SECRET_EXAMPLE = BASE / "secret.example.yaml"
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
SECRET_KEYS = {"DATABASE_URL", "REDIS_URL", "LITELLM_API_KEY", "GATEWAY_ADMIN_TOKEN"}
CONFIG_PATH = "/etc/maas-gateway/config.yaml"


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return kustomize(BASE)


@pytest.fixture(scope="module")
def openshift() -> list[dict]:
    return kustomize(OPENSHIFT)


@pytest.fixture(scope="module")
def litemaas() -> list[dict]:
    return kustomize(LITEMAAS)


def by_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[dict], kind: str) -> dict:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def named(manifests: list[dict], kind: str, wanted: str) -> dict:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == wanted]
    return found


def name(manifest: dict) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def _object_meta_validator(version: str) -> jsonschema.Validator:
    """Kubernetes' own ObjectMeta schema from kubernetes-validate's bundle."""
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    directory = next(d for d in root.iterdir() if d.name.startswith(f"v{version}") and d.name.endswith("-strict"))
    schema = json.loads((directory / "objectmeta-meta-v1.json").read_text())
    definitions = json.loads((directory / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _route_errors(route: dict) -> list[str]:
    schema = json.loads((HERE / "schemas/route.openshift.io-v1-route.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(route)]
    for version in KUBERNETES_VERSIONS:
        meta = _object_meta_validator(version)
        errors += [f"metadata/{'/'.join(map(str, e.path))}: {e.message}" for e in meta.iter_errors(route["metadata"])]
    return errors


def schema_errors(manifests: list[dict]) -> dict[str, list[str]]:
    """Every manifest's schema errors (an empty list when valid), by Kind/name."""
    errors: dict[str, list[str]] = {}
    operator = [m for m in manifests if m["kind"] in PROMETHEUS_OPERATOR_KINDS]
    if operator:
        errors.update(validate_prometheus_operator(operator))
    for manifest in manifests:
        if manifest["kind"] in PROMETHEUS_OPERATOR_KINDS:
            continue
        if manifest["apiVersion"] == "route.openshift.io/v1" and manifest["kind"] == "Route":
            errors[name(manifest)] = _route_errors(manifest)
            continue
        problems = []
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"Kubernetes {version}: {'/'.join(map(str, exc.path))}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"Kubernetes {version}: no schema: {exc.message}")
        errors[name(manifest)] = problems
    return errors


# --- rendering and schemas -----------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["base", "openshift", "litemaas"])
def test_every_rendered_manifest_is_valid_against_its_schema(overlay: str, request: pytest.FixtureRequest) -> None:
    manifests = request.getfixturevalue(overlay)
    errors = schema_errors(manifests)
    assert len(errors) == len(manifests), "two manifests share a kind and name"
    assert {k: v for k, v in errors.items() if v} == {}


def test_the_example_secret_is_valid_and_clearly_an_example() -> None:
    (secret,) = load_all(SECRET_EXAMPLE)
    assert schema_errors([secret]) == {"Secret/maas-gateway": []}
    assert set(secret["stringData"]) == SECRET_KEYS
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())
    assert SECRET_EXAMPLE.read_text().startswith("# EXAMPLE ONLY")
    # not rendered by kustomize: applying the base never overwrites a real Secret
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert SECRET_EXAMPLE.name not in kustomization["resources"]


def test_the_validators_reject_broken_manifests(base: list[dict]) -> None:
    """The validation above is real: a typo or a wrong type in each kind is caught."""
    broken = []
    for manifest in base:
        bad = json.loads(json.dumps(manifest))
        if manifest["kind"] == "ServiceMonitor":
            bad["spec"]["endpoints"][0]["port"] = 8080  # must be a port name
        elif manifest["kind"] == "PrometheusRule":
            bad["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
        elif "spec" in bad:
            bad["spec"]["replicaz"] = 2  # a typo the API server would drop or refuse
        else:
            bad["dataz"] = {}
        broken.append(bad)
    errors = schema_errors(broken)
    assert [k for k, v in errors.items() if not v] == []


def test_the_route_schema_rejects_a_broken_route(openshift: list[dict]) -> None:
    route = json.loads(json.dumps(one(openshift, "Route")))
    route["spec"]["tls"]["termination"] = "edge-ish"
    route["spec"]["port"]["targetport"] = "http"
    route["metadata"]["labels"] = ["not", "a", "map"]
    errors = _route_errors(route)
    assert len(errors) >= 3, errors


def test_the_overlay_is_the_base_plus_a_route(base: list[dict], openshift: list[dict]) -> None:
    assert sorted(map(name, openshift)) == sorted([*map(name, base), "Route/maas-gateway"])
    assert [m for m in openshift if m["kind"] != "Route"] == base


def test_the_expected_kinds_are_there(base: list[dict]) -> None:
    assert sorted(m["kind"] for m in base) == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "NetworkPolicy",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    assert all("namespace" not in m["metadata"] for m in base), "the namespace is the operator's choice (kubectl -n)"


# --- the Deployment ----------------------------------------------------------------------


def container(manifest: dict) -> dict:
    (only,) = manifest["spec"]["template"]["spec"]["containers"]
    return only


def test_probes(base: list[dict]) -> None:
    gateway = container(one(base, "Deployment"))
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert ports == {"http": 8080, "admin": 9090}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert gateway["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}


def test_resources_are_set(base: list[dict]) -> None:
    for manifest in (one(base, "Deployment"), one(base, "Job")):
        resources = container(manifest)["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}
        assert set(resources["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_security_context_is_restricted(base: list[dict], kind: str) -> None:
    pod = one(base, kind)["spec"]["template"]["spec"]
    sc = container(one(base, kind))["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in sc
    # OpenShift assigns the UID: no fixed one anywhere
    for context in (pod["securityContext"], sc):
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context), context
    assert pod["automountServiceAccountToken"] is False
    # a read-only root filesystem needs a writable /tmp
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = next(m for m in container(one(base, kind))["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_config_yaml_comes_from_the_configmap(base: list[dict], kind: str) -> None:
    configmap = one(base, "ConfigMap")
    assert configmap["metadata"]["name"].startswith("maas-gateway-config-"), "generated, with a content hash"
    pod = one(base, kind)["spec"]["template"]["spec"]
    c = container(one(base, kind))
    mount = next(m for m in c["volumeMounts"] if CONFIG_PATH.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert Path(CONFIG_PATH).name in configmap["data"]
    assert c["args"][1:] == ["--config", CONFIG_PATH]


def test_the_commands(base: list[dict]) -> None:
    assert container(one(base, "Deployment"))["args"][0] == "serve"
    job = one(base, "Job")
    assert container(job)["args"][0] == "migrate"
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    # both run the same image, set once in kustomization.yaml
    images = {container(m)["image"] for m in (one(base, "Deployment"), job)}
    assert len(images) == 1 and ":" in images.pop()


def secret_refs(c: dict) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_secrets_come_from_the_secret(base: list[dict]) -> None:
    (secret,) = load_all(SECRET_EXAMPLE)
    gateway = container(one(base, "Deployment"))
    refs = secret_refs(gateway)
    assert set(refs) == SECRET_KEYS
    assert {ref for ref in refs.values()} == {(secret["metadata"]["name"], key) for key in SECRET_KEYS}
    assert secret_refs(container(one(base, "Job"))) == {"DATABASE_URL": (secret["metadata"]["name"], "DATABASE_URL")}
    # every variable the pods set is one the gateway reads
    for manifest in (one(base, "Deployment"), one(base, "Job")):
        names = {e["name"] for e in container(manifest).get("env", [])}
        assert names <= set(ENVIRONMENT), names - set(ENVIRONMENT)
    workers = next(e for e in gateway["env"] if e["name"] == "GATEWAY_WORKERS")
    assert int(workers["value"]) >= 1


def test_the_configmap_is_a_valid_gateway_config(base: list[dict]) -> None:
    text = one(base, "ConfigMap")["data"]["config.yaml"]
    assert text == (BASE / "config.yaml").read_text()
    environ = {"GATEWAY_WORKERS": "2", **{k: "x" for k in ("LITELLM_API_KEY", "GATEWAY_ADMIN_TOKEN")}}
    config = parse_config(yaml.safe_load(text), environ)  # raises on an unknown key or a secret in the file
    assert config.server.host == "0.0.0.0"
    assert config.server.workers == 2, "GATEWAY_WORKERS from the pod's environment wins"
    assert config.server.migrate_on_start is False, "the migration Job migrates, not every replica at start"
    ports = {p["name"]: p["containerPort"] for p in container(one(base, "Deployment"))["ports"]}
    assert (config.server.port, config.server.admin_port) == (ports["http"], ports["admin"])


# --- availability and scaling ----------------------------------------------------------------


def pod_labels(base: list[dict]) -> dict[str, str]:
    return one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_service_pdb_and_hpa_target_the_gateway_pods(base: list[dict]) -> None:
    labels = pod_labels(base)
    deployment = one(base, "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = named(base, "Service", "maas-gateway")
    assert selects(service["spec"]["selector"], labels)
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    admin = named(base, "Service", "maas-gateway-admin")
    assert selects(admin["spec"]["selector"], labels)
    assert admin["spec"]["ports"] == [{"name": "admin", "port": 9090, "targetPort": "admin", "protocol": "TCP"}]
    # the migration Job's pod is not behind the Service, nor counted by the PDB
    job_labels = one(base, "Job")["spec"]["template"]["metadata"]["labels"]
    assert not selects(service["spec"]["selector"], job_labels)
    pdb = one(base, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert not selects(pdb["spec"]["selector"]["matchLabels"], job_labels)
    hpa = one(base, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "maas-gateway"}
    assert hpa["spec"]["minReplicas"] >= 2, "one pod may be evicted (PDB) while another still serves"
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


# --- network policies ---------------------------------------------------------------------------

LITELLM_POD = {"app.kubernetes.io/name": "litellm", "app.kubernetes.io/instance": "litellm"}  # its Helm chart's labels


def test_only_the_gateway_pods_reach_litellm(base: list[dict]) -> None:
    policy = named(base, "NetworkPolicy", "litellm-from-gateway-only")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], LITELLM_POD)
    assert not selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(base))
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # with a policy selecting them, LiteLLM's pods refuse the rest
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"podSelector"}, "no namespaceSelector or ipBlock: this namespace's gateway pods only"
    assert selects(source["podSelector"]["matchLabels"], pod_labels(base))
    job_labels = one(base, "Job")["spec"]["template"]["metadata"]["labels"]
    assert not selects(source["podSelector"]["matchLabels"], job_labels), "the migration Job needs no LiteLLM"
    assert rule["ports"] == [{"port": 4000, "protocol": "TCP"}]
    litellm_url = parse_config(yaml.safe_load(one(base, "ConfigMap")["data"]["config.yaml"]), {}).litellm.url
    assert litellm_url.endswith(":4000")


def test_the_admin_port_admits_this_namespace_and_monitoring_only(base: list[dict]) -> None:
    policy = named(base, "NetworkPolicy", "maas-gateway")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels(base).items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
    assert set(rules) == {"http", "admin"} and all(len(rule["ports"]) == 1 for rule in rules.values())
    assert "from" not in rules["http"], "the public port: clients arrive through the ingress or router"
    same_namespace, monitoring = rules["admin"]["from"]
    assert same_namespace == {"podSelector": {}}
    (expression,) = monitoring["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "In"
    assert {"openshift-user-workload-monitoring", "monitoring"} <= set(expression["values"])
    ports = {p["name"] for p in container(one(base, "Deployment"))["ports"]}
    assert set(rules) == ports, "every container port is covered by a rule"


# --- monitoring --------------------------------------------------------------------------------


def test_the_servicemonitor_scrapes_the_service(base: list[dict]) -> None:
    monitor = one(base, "ServiceMonitor")
    service = named(base, "Service", "maas-gateway-admin")  # /metrics is on the admin listener only
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert not selects(monitor["spec"]["selector"]["matchLabels"], named(base, "Service", "maas-gateway")["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_the_prometheusrule_has_exactly_the_alerts_of_alerts_yaml(base: list[dict]) -> None:
    rule = one(base, "PrometheusRule")
    alerts = yaml.safe_load(prometheusrule.ALERTS.read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    assert prometheusrule.PROMETHEUS_RULE.read_text() == prometheusrule.render(prometheusrule.ALERTS.read_text()), (
        "prometheusrule.yaml is out of date: run .venv/bin/python -m tests.deploy.prometheusrule"
    )


# --- OpenShift ----------------------------------------------------------------------------------


def test_the_route_exposes_the_service_over_tls(openshift: list[dict]) -> None:
    route = one(openshift, "Route")
    service = named(openshift, "Service", "maas-gateway")
    assert route["spec"]["to"] == {"kind": "Service", "name": service["metadata"]["name"], "weight": 100}
    assert route["spec"]["port"]["targetPort"] in {p["name"] for p in service["spec"]["ports"]}
    assert route["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    # streams outlive the router's default 30 s timeout
    assert route["metadata"]["annotations"]["haproxy.router.openshift.io/timeout"] == "10m"


# --- LiteMaaS ------------------------------------------------------------------------------------


def test_the_litemaas_overlay_is_the_base_with_its_config_and_the_triggers_step(base: list[dict], litemaas: list[dict]) -> None:
    assert sorted(m["kind"] for m in litemaas) == sorted(m["kind"] for m in base)
    configmap = one(litemaas, "ConfigMap")
    assert configmap["metadata"]["name"] != one(base, "ConfigMap")["metadata"]["name"], "a new hash: the pods roll"
    for kind in ("Deployment", "Job"):
        volumes = one(litemaas, kind)["spec"]["template"]["spec"]["volumes"]
        assert next(v for v in volumes if "configMap" in v)["configMap"]["name"] == configmap["metadata"]["name"]
    assert container(one(litemaas, "Job"))["args"] == ["migrate", "--config", CONFIG_PATH, "--litemaas-triggers"]
    assert container(one(litemaas, "Deployment")) == container(one(base, "Deployment"))
    environ = {"GATEWAY_WORKERS": "2", **{k: "x" for k in ("LITELLM_API_KEY", "GATEWAY_ADMIN_TOKEN")}}
    config = parse_config(yaml.safe_load(configmap["data"]["config.yaml"]), environ)
    assert (config.database.schema, config.litellm.auth, config.litellm.sync_users, config.enforcement.mode.value) == (
        "litemaas", "passthrough", False, "shadow")
    assert config.server.migrate_on_start is False
    assert (config.server.host, config.server.port) == ("0.0.0.0", container(one(litemaas, "Deployment"))["ports"][0]["containerPort"])
