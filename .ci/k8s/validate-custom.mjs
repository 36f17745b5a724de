// The custom resources in the manifests given (ServiceMonitor, PodMonitor, PrometheusRule,
// Certificate) checked against their CRDs' schemas; the built-in kinds are checked by
// kubernetes-validate (.ci/k8s/run). Exits 1 naming each resource that does not validate, and
// when a custom kind has no schema here.
import { readFileSync } from "node:fs";
import * as yaml from "js-yaml";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import * as certManager from "@kubernetes-models/cert-manager/cert-manager.io/v1";

const groups = { "monitoring.coreos.com/v1": monitoring, "cert-manager.io/v1": certManager };
const builtIn = (apiVersion) => !apiVersion.includes(".") || apiVersion.endsWith(".k8s.io/v1");
let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc || builtIn(doc.apiVersion)) continue;
    const Model = groups[doc.apiVersion]?.[doc.kind];
    const name = `${file}: ${doc.kind}/${doc.metadata?.name}`;
    if (!Model) {
      console.log(`no schema for ${doc.apiVersion} ${doc.kind} (${name})`);
      failed++;
      continue;
    }
    try {
      new Model(doc).validate();
      console.log(`valid ${name}`);
    } catch (e) {
      console.log(`INVALID ${name}: ${e.message}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
