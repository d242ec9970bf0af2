// Validates Prometheus Operator custom resources (ServiceMonitor, PrometheusRule) against
// the schemas generated from the operator's CRDs, as shipped by the npm package
// @kubernetes-models/prometheus-operator (install: npm ci --prefix tests/deploy).
//
// stdin: a JSON array of manifests. stdout: a JSON array, one entry per manifest:
// {"kind", "name", "errors": [...]} with errors empty when the manifest is valid.
// Exit status 0 when every manifest was checked (valid or not), 2 on a kind it does not know.
import { readFileSync } from "node:fs";
import { PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const MODELS = { "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule, "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor };

const manifests = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const manifest of manifests) {
  const Model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
  if (!Model) {
    process.stderr.write(`validate_crds: no schema for ${manifest.apiVersion} ${manifest.kind}\n`);
    process.exit(2);
  }
  const errors = [];
  try {
    new Model(manifest).validate();
  } catch (error) {
    errors.push(String(error.message ?? error));
  }
  results.push({ kind: manifest.kind, name: manifest.metadata?.name ?? null, errors });
}
process.stdout.write(JSON.stringify(results));
