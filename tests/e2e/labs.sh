#!/usr/bin/env bash
# The labs' k8s backend against the e2e cluster, which must be up with the platform
# applied (tests/e2e/platform.sh apply): for each lab, `mllab run N --backend k8s --quick`
# then `mllab check N`, as a learner on the control host would, with the lab runner image
# built from this checkout (images/mllab) and MLflow reached through its Service.
#
#   tests/e2e/labs.sh [LAB...]      (default: the labs whose dependencies the e2e cluster has)
set -euo pipefail

# shellcheck source=tests/e2e/lib/env.sh
source "$(dirname "$0")/lib/env.sh"

# Every lab with a cluster side: 1 (a Job; no GPU here, so its GPU check is skipped),
# 2 (Job, pod killed, replaced, resumed), 4 (one Indexed Job, a trial per index), 5 (Indexed
# Job + torchrun), 6-8 (InferenceServices on the KServe the platform installed, retraining
# Job, lab 8's pipeline steps as Jobs on the work PVC). Lab 3 is MLflow only. Lab 7's ServiceMonitor and Prometheus query need Prometheus (real hosts).
labs=("$@")
[[ ${#labs[@]} -gt 0 ]] || labs=(1 2 4 5 6 7 8)

export KUBECONFIG=${E2E_KUBECONFIG:-$CACHE/kubeconfig}
[[ -f $KUBECONFIG ]] || { echo "labs.sh: no e2e cluster (tests/e2e/cluster up)" >&2; exit 1; }
kubectl() { "$CACHE/bin/kubectl" "$@"; }
"$E2E/cluster" import mllab

# MLflow as the pods reach it (the URI the platform gives JupyterLab) and as this host
# reaches it (the same path on the Service's cluster IP: the host is the cluster's node).
job_uri=$(kubectl -n ml-labs get deploy jupyter \
  -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="MLFLOW_TRACKING_URI")].value}')
[[ -n $job_uri ]] || { echo "labs.sh: the platform is not applied (tests/e2e/platform.sh apply)" >&2; exit 1; }
ip=$(kubectl -n mlflow get svc mlflow -o jsonpath='{.spec.clusterIP}')
export MLFLOW_TRACKING_URI="http://$ip:5000/${job_uri#http://*/}"
export MLLAB_JOB_TRACKING_URI=$job_uri MLLAB_IMAGE MLLAB_HOME=$CACHE/mllab-home
rm -rf "$MLLAB_HOME"
mkdir -p "$CACHE/logs"

failed=()
for lab in "${labs[@]}"; do
  t0=$SECONDS
  if "$VENV/bin/mllab" run "$lab" --backend k8s --quick &&
     "$VENV/bin/mllab" check "$lab" --json >"$CACHE/logs/lab-$lab-check.json"; then
    echo "labs.sh: lab $lab passed on the k8s backend in $((SECONDS - t0)) s"
  else
    failed+=("$lab")
    echo "labs.sh: lab $lab FAILED on the k8s backend; check: $CACHE/logs/lab-$lab-check.json" >&2
    cat "$CACHE/logs/lab-$lab-check.json" >&2 2>/dev/null || true
  fi
done
kubectl -n ml-training get jobs,pods -l app.kubernetes.io/managed-by=mllab >"$CACHE/logs/labs-objects.txt" 2>&1 || true
[[ ${#failed[@]} -eq 0 ]] || { echo "labs.sh: failed: ${failed[*]}" >&2; exit 1; }
