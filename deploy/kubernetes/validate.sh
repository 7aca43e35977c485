#!/usr/bin/env bash
# Validates every manifest under deploy/kubernetes/ against the Kubernetes API schemas
# with kubernetes-validate --strict (unknown fields are errors), and checks what the
# schemas cannot: each Deployment runs as non-root on a read-only root filesystem with
# gRPC probes, and the Secrets hold only placeholders.
#
#   deploy/kubernetes/validate.sh          # KUBERNETES_VERSIONS="1.30.0 1.37.0" by default
#
# kubernetes-validate (PyPI) is pinned below and installed into a venv beside this
# script (deploy/kubernetes/.venv, reused when it already has that version). Each
# manifest is checked against two Kubernetes versions: 1.30, an old floor (the manifests
# need gRPC probes, GA in 1.27, autoscaling/v2 and policy/v1), and 1.37, the newest the
# pinned release has schemas for. Ends with `N passed, N failed`; exits non-zero if any
# check failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

pinned=1.37.0
versions=${KUBERNETES_VERSIONS:-1.30.0 1.37.0}
venv=${KUBERNETES_VALIDATE_VENV:-$here/.venv}

if [ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null || true)" != "$pinned" ]; then
  echo "== installing kubernetes-validate==$pinned into $venv"
  python3 -m venv "$venv" || { echo "validate: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$pinned"
fi

passed=0
failed=0
check() {
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1)); echo "ok: $what"
  else
    failed=$((failed + 1)); echo "FAILED: $what"
  fi
}

manifests=("$here"/*.yaml)
[ -e "${manifests[0]}" ] || { echo "validate: no manifest in $here" >&2; exit 1; }

for version in $versions; do
  echo "== kubernetes-validate $pinned --strict, Kubernetes $version"
  for manifest in "${manifests[@]}"; do
    check "$(basename "$manifest") is valid for Kubernetes $version (strict)" \
      "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$manifest"
  done
done

# What the schemas accept but this deployment must not lose. Read with the venv's PyYAML
# (a dependency of kubernetes-validate).
echo "== the rules the schemas do not enforce"
rules() {
  "$venv/bin/python" - "$@" <<'EOF'
import sys, yaml

docs = [d for path in sys.argv[1:] for d in yaml.safe_load_all(open(path)) if d]
kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], []).append(d)
problems = []
for dep in kinds.get("Deployment", []):
    name = dep["metadata"]["name"]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    if spec.get("replicas", 1) < 2:
        problems.append(f"{name}: fewer than 2 replicas")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{name}: pod not runAsNonRoot")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem"):
            problems.append(f"{name}/{c['name']}: root filesystem writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}/{c['name']}: privilege escalation allowed")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{name}/{c['name']}: capabilities not all dropped")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if "grpc" not in c.get(probe, {}):
                problems.append(f"{name}/{c['name']}: {probe} is not a gRPC probe")
        res = c.get("resources", {})
        if not res.get("requests") or not res.get("limits"):
            problems.append(f"{name}/{c['name']}: resource requests or limits missing")
        if not any("configMapRef" in e for e in c.get("envFrom", [])) or \
           not any("secretRef" in e for e in c.get("envFrom", [])):
            problems.append(f"{name}/{c['name']}: settings not from a ConfigMap and a Secret")
    for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        if not any(d["metadata"]["name"] == name for d in kinds.get(kind, [])):
            problems.append(f"{name}: no {kind}")
for hpa in kinds.get("HorizontalPodAutoscaler", []):
    if hpa["spec"].get("minReplicas", 1) < 2:
        problems.append(f"{hpa['metadata']['name']}: HPA may scale below 2")
for secret in kinds.get("Secret", []):
    for key, value in secret.get("stringData", {}).items():
        if "REPLACE-ME" not in value:
            problems.append(f"{secret['metadata']['name']}.{key}: not a marked placeholder")
    if secret.get("data"):
        problems.append(f"{secret['metadata']['name']}: base64 data (use marked stringData placeholders)")
if not kinds.get("Deployment"):
    problems.append("no Deployment")
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
EOF
}
check "Deployments: 2+ replicas, non-root, read-only root, no escalation, no capabilities, gRPC probes, resources, ConfigMap + Secret; each has a Service, PDB and HPA; Secrets hold placeholders" \
  rules "${manifests[@]}"

echo
echo "kubernetes-validate: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
