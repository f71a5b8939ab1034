#!/usr/bin/env bash
# The labs' k8s backend against the e2e cluster, which must be up with the platform
# applied (tests/e2e/platform.sh apply): for each lab, `mllab run N --backend k8s --quick`
# then `mllab check N`, as a learner on the control host would (labs 2, 5 and 6 with the learner's
# starter, the reference and a wrong solution in their workspace; the others with --solution), with the lab runner image
# built from this checkout (images/mllab) and MLflow reached through its Service.
#
#   tests/e2e/labs.sh [LAB...]      (default: the labs whose dependencies the e2e cluster has)
set -euo pipefail

# shellcheck source=tests/e2e/lib/env.sh
source "$(dirname "$0")/lib/env.sh"

# Every lab with a cluster side: 1 (a Job; no GPU here, so its GPU check is skipped),
# 2 (Job, pod killed, replaced, resumed), 4 (one Indexed Job, a trial per index), 5 (Indexed
# Job + torchrun), 6-8 (InferenceServices on the KServe the platform installed, retraining
# Job, lab 8's pipeline steps as Jobs on the work PVC). Lab 3 is MLflow only. Lab 7's server is scraped
# and its drift rule evaluated by the cluster's Prometheus (cluster observability): its check must grade
# the alerts Prometheus recorded.
labs=("$@")
[[ ${#labs[@]} -gt 0 ]] || labs=(1 2 4 5 6 7 8)

export KUBECONFIG=${E2E_KUBECONFIG:-$CACHE/kubeconfig}
[[ -f $KUBECONFIG ]] || { echo "labs.sh: no e2e cluster (tests/e2e/cluster up)" >&2; exit 1; }
kubectl() { "$CACHE/bin/kubectl" "$@"; }
# The lab image the platform layer's lab_image role pushed (artifacts/lab-image): the pods
# pull it from the registry, as on a MicroK8s node.
MLLAB_IMAGE=$(cat "$CACHE/artifacts/lab-image") ||
  { echo "labs.sh: no lab image pushed yet (tests/e2e/platform.sh apply)" >&2; exit 1; }

# shellcheck source=tests/e2e/lib/playbook.sh
source "$E2E/lib/playbook.sh"
mlflow_env
# The monitoring layer's accuracy threshold, as the labs layer's profile.sh hands it to a learner
# (from the same setting the monitoring role's rule reads; lab 7's check compares the two).
MLLAB_ALERT_ACCURACY_MIN=$(sed -n 's/^monitoring_accuracy_min: *//p' "$VARS")
[[ -n $MLLAB_ALERT_ACCURACY_MIN ]] ||
  { echo "labs.sh: no monitoring_accuracy_min in $VARS (tests/e2e/platform.sh apply writes it)" >&2; exit 1; }
export MLLAB_ALERT_ACCURACY_MIN MLLAB_IMAGE MLLAB_HOME=$CACHE/mllab-home
rm -rf "$MLLAB_HOME"
mkdir -p "$CACHE/logs"

# Labs 2, 5 and 6 are graded three ways with the learner's code running in the cluster's pods (the
# files reach them as a ConfigMap): the untouched starter fails, the reference solution copied into
# the workspace passes, a plausible wrong solution (python/tests/exercises/<lab>/wrong/) fails,
# each with the check that must fail named below. The other labs run the reference (--solution).
declare -A must_fail=(
  [2]="resumed run ends with bitwise identical weights"
  [5]="2 ranks together train on the dataset once per epoch"
  [6]="V2: outputs predictions INT64 [n] and probabilities FP32 [n, 10]"
)
export MLLAB_WORKSPACE=$CACHE/mllab-workspace
rm -rf "$MLLAB_WORKSPACE"
pkg=$ROOT/python/src/mllab/exercises
wrong=$ROOT/python/tests/exercises

# run_case LAB CASE: the learner's path (start, their files, run on the cluster, check); 0 when the
# grade is the one CASE must get.
run_case() {
  local lab=$1 case=$2 dir report want
  dir=$("$VENV/bin/python" -c "from mllab.labs import get_lab; print(get_lab($lab).dirname)")
  report=$CACHE/logs/lab-$lab-$case-check.json
  "$VENV/bin/mllab" start "$lab" --reset-files >/dev/null
  case $case in
    solution) cp "$pkg/$dir/solution/"* "$MLLAB_WORKSPACE/$dir/" ;;
    wrong) cp "$wrong/$dir/wrong/"* "$MLLAB_WORKSPACE/$dir/" ;;
  esac
  "$VENV/bin/mllab" run "$lab" --backend k8s --quick || return 1
  "$VENV/bin/mllab" check "$lab" --json >"$report" && [[ $case == solution ]] && return 0
  [[ $case != solution ]] || { cat "$report" >&2; return 1; }
  want=${must_fail[$lab]}
  "$VENV/bin/python" - "$report" "$want" <<'PY' || { cat "$report" >&2; return 1; }
import json, sys
report, want = json.load(open(sys.argv[1])), sys.argv[2]
bad = [c["name"] for c in report["checks"] if not c["passed"]]
assert not report["passed"] and bad, "every check passed"
assert not want or want in bad, f"expected {want!r} to fail; failing: {bad}"
print(f"labs.sh: as it must, the check failed: {bad}")
PY
}

# prometheus_graded REPORT: lab 7's check graded the alerts as the cluster's Prometheus recorded them
# (then platform.sh test-after-lab-7: the dashboards' queries on the lab server's metrics).
prometheus_graded() {
  "$VENV/bin/python" - "$1" <<'PY'
import json, sys
checks = {c["name"]: c for c in json.load(open(sys.argv[1]))["checks"]}
from_prometheus = [n for n in checks if n.endswith("(Prometheus)")]
assert len(from_prometheus) == 2 and all(checks[n]["passed"] for n in from_prometheus), sorted(checks)
print("labs.sh: lab 7's alerts were read from Prometheus:", "; ".join(checks[n]["reason"] for n in from_prometheus))
PY
}

# one_lab LAB: grade one lab (the three cases, or the reference); its output goes to its log.
one_lab() {
  local lab=$1 t0=$SECONDS ok=1 case
  if [[ -v must_fail[$lab] ]]; then
    for case in starter solution wrong; do
      if run_case "$lab" "$case"; then
        echo "labs.sh: lab $lab, $case: graded as it must be on the k8s backend ($((SECONDS - t0)) s so far)"
      else
        ok=0
        echo "labs.sh: lab $lab, $case: WRONG grade on the k8s backend" >&2
      fi
    done
  elif "$VENV/bin/mllab" run "$lab" --backend k8s --quick --solution &&
       "$VENV/bin/mllab" check "$lab" --json >"$CACHE/logs/lab-$lab-check.json" &&
       { [[ $lab != 7 ]] || { prometheus_graded "$CACHE/logs/lab-$lab-check.json" && "$E2E/platform.sh" test-after-lab-7; }; }; then
    echo "labs.sh: lab $lab passed on the k8s backend in $((SECONDS - t0)) s"
  else
    ok=0
    echo "labs.sh: lab $lab FAILED on the k8s backend; check: $CACHE/logs/lab-$lab-check.json" >&2
    cat "$CACHE/logs/lab-$lab-check.json" >&2 2>/dev/null || true
  fi
  [[ $ok == 1 ]]
}

# E2E_LAB_JOBS labs at a time (default 2): a lab spends much of its time waiting on pods (start,
# fetch, rendezvous), and each lab has its own objects, MLflow experiment, workspace folder and
# state folder (progress.json is updated under a lock). Longest first; logs printed in order.
jobs_max=${E2E_LAB_JOBS:-2}
results=$(mktemp -d)
mapfile -t order < <(for lab in "${labs[@]}"; do
  case $lab in 2) w=9 ;; 5|6) w=8 ;; 7) w=6 ;; 8) w=5 ;; *) w=1 ;; esac; echo "$w $lab"; done | sort -k1,1nr | cut -d' ' -f2)
for lab in "${order[@]}"; do
  while (( $(jobs -rp | wc -l) >= jobs_max )); do wait -n || true; done
  ( if one_lab "$lab" >"$results/$lab.log" 2>&1; then touch "$results/$lab.ok"; fi ) &
done
wait
failed=()
for lab in "${labs[@]}"; do
  echo "=== labs.sh: lab $lab"
  cat "$results/$lab.log"
  [[ -e $results/$lab.ok ]] || failed+=("$lab")
done
rm -rf "$results"
kubectl -n ml-training get jobs,pods -l app.kubernetes.io/managed-by=mllab >"$CACHE/logs/labs-objects.txt" 2>&1 || true
[[ ${#failed[@]} -eq 0 ]] || { echo "labs.sh: failed: ${failed[*]}" >&2; exit 1; }
