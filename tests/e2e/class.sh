#!/usr/bin/env bash
# A class on the e2e cluster, which must have the platform applied (tests/e2e/platform.sh apply):
#   1. the classroom role applies a roster of 30 learners (playbooks/labs.yml --tags class), timed;
#      a second run must report changed=0;
#   2. tests/infra/test_class.py with learners ana, ben and cleo: what a learner can and cannot do,
#      with real requests made with their own kubeconfigs (authorization, the Service admission
#      policy, PodSecurity restricted, the NetworkPolicies enforced, MLflow) and their hub logins
#      (JupyterHub spawns each one's notebook in their namespace; the hub's memory with three);
#   3. ana, ben and cleo run lab 2 at the same time, each on the k8s backend in their own
#      namespace with their own kubeconfig and settings (artifacts/class/<learner>/), and pass
#      `mllab check 2`; `mllab class --json` (the admin's view) shows it;
#   4. roster changes: dropping 27 learners keeps their namespaces (and says so), applied while
#      the three run lab 2 (it must not disturb them); an empty roster with
#      mllab_learners_prune: true deletes every learner namespace.
#
#   tests/e2e/class.sh
set -euo pipefail

# shellcheck source=tests/e2e/lib/env.sh
source "$(dirname "$0")/lib/env.sh"
# shellcheck source=tests/e2e/lib/playbook.sh
source "$E2E/lib/playbook.sh"

[[ -f $KUBECONFIG_E2E ]] || { echo "class.sh: no e2e cluster (tests/e2e/cluster up)" >&2; exit 1; }
kubectl() { "$CACHE/bin/kubectl" --kubeconfig "$KUBECONFIG_E2E" "$@"; }
image=$(cat "$ARTIFACTS/lab-image") || { echo "class.sh: no lab image pushed yet (tests/e2e/platform.sh apply)" >&2; exit 1; }
mlflow_env
write_vars
# The class hub's images (jupyter's, the notebooks', is the platform's)
"$E2E/cluster" import jupyterhub configurable-http-proxy >/dev/null
CLASS_VARS=$CACHE/class-vars.yml
LOGS=$CACHE/logs
mkdir -p "$LOGS"
three=(ana ben cleo)
roster=("${three[@]}")
for i in $(seq 4 30); do roster+=("s$(printf %02d "$i")"); done

# apply_class PRUNE NAME...: the classroom role for this roster; its output in $LOGS/class-apply.log
apply_class() {
  local prune=$1
  shift
  printf 'mllab_image: %s\nmllab_learners_prune: %s\nmllab_learners: [%s]\n' \
    "$image" "$prune" "$(IFS=,; echo "$*")" >"$CLASS_VARS"
  playbook playbooks/labs.yml --tags class -e "@$CLASS_VARS" >"$LOGS/class-apply.log" 2>&1 ||
    { tail -40 "$LOGS/class-apply.log" >&2; return 1; }
}
recap() { grep -E '^localhost +:' "$LOGS/class-apply.log"; }

t=$SECONDS
apply_class false "${roster[@]}"
first=$((SECONDS - t))
echo "class.sh: a class of ${#roster[@]} learners applied in $first s: $(recap)"
t=$SECONDS
apply_class false "${roster[@]}"
second=$((SECONDS - t))
recap | grep -q ' changed=0 ' || { echo "class.sh: the second run changed something: $(recap)" >&2; exit 1; }
echo "class.sh: applied again in $second s with changed=0"
[[ $(kubectl get namespace -l mllab.io/namespace-role=learner -o name | wc -l) == "${#roster[@]}" ]]

# The hub as a browser on this host (the cluster's node) reaches it: the proxy's Service.
hub_ip=$(kubectl -n ml-labs get service proxy-public -o jsonpath='{.spec.clusterIP}')
rm -f "$LOGS/class-hub.txt"
(cd "$ROOT" && MLLAB_KUBECONFIG=$KUBECONFIG_E2E MLLAB_ARTIFACTS_DIR=$ARTIFACTS MLLAB_EXPECT_LAYERS=class \
  MLLAB_CLASS_LEARNERS="${three[*]}" MLLAB_CLASS_HUB_URL="http://$hub_ip/jupyterhub/" \
  MLLAB_CLASS_REPORT="$LOGS/class-hub.txt" "$VENV/bin/python" -m pytest tests/infra/test_class.py -p no:cacheprovider -q -ra)
cat "$LOGS/class-hub.txt"

# Three learners at once, each as they would work: their settings file, their kubeconfig, their
# own mllab state and workspace.
t=$SECONDS
for who in "${three[@]}"; do
  (
    # shellcheck source=/dev/null
    source "$ARTIFACTS/class/$who/mllab.env"
    # the instructor's alert threshold reaches the learner (the e2e platform's monitoring_accuracy_min)
    [[ $MLLAB_ALERT_ACCURACY_MIN == "$(sed -n 's/^monitoring_accuracy_min: *//p' "$VARS")" ]] ||
      { echo "class.sh: $who's mllab.env has MLLAB_ALERT_ACCURACY_MIN=${MLLAB_ALERT_ACCURACY_MIN:-unset}" >&2; exit 1; }
    export MLLAB_HOME=$CACHE/class/$who/home MLLAB_WORKSPACE=$CACHE/class/$who/work
    rm -rf "$CACHE/class/$who"
    # the learner's own files: the starter, completed (here with the reference solution)
    "$VENV/bin/mllab" start 2 >/dev/null &&
      cp "$ROOT/python/src/mllab/exercises/02-training-job/solution/"* "$MLLAB_WORKSPACE/02-training-job/" &&
      "$VENV/bin/mllab" run 2 --backend k8s --quick &&
      "$VENV/bin/mllab" check 2 --json >"$LOGS/class-$who-lab2.json"
  ) >"$LOGS/class-$who-lab2.log" 2>&1 &
done

# Meanwhile the instructor drops 27 learners from the roster (not pruned): an apply that must say
# their namespaces are kept, and must not disturb the three learners at work.
apply_class false "${three[@]}"
grep -q "kept with their work and volumes: learner-s04" "$LOGS/class-apply.log" ||
  { echo "class.sh: the run without 27 learners does not say their namespaces are kept" >&2; exit 1; }
[[ $(kubectl get namespace -l mllab.io/namespace-role=learner -o name | wc -l) == "${#roster[@]}" ]]
echo "class.sh: the roster of ${#three[@]} applied while they worked: the other learners' namespaces kept"

failed=()
for who in "${three[@]}"; do wait -n || failed+=("?"); done
for who in "${three[@]}"; do
  echo "=== class.sh: lab 2 as $who"
  tail -5 "$LOGS/class-$who-lab2.log"
done
[[ ${#failed[@]} == 0 ]] || { echo "class.sh: lab 2 failed for ${#failed[@]} learner(s); logs in $LOGS/class-*-lab2.log" >&2; exit 1; }
echo "class.sh: ${three[*]} passed lab 2 together in $((SECONDS - t)) s"
for who in "${three[@]}"; do
  left=$(kubectl get jobs,pods -A -l "mllab.io/learner=$who" -o jsonpath='{range .items[*]}{.metadata.namespace}{"\n"}{end}' | sort -u)
  [[ -z $left || $left == "learner-$who" ]] || { echo "class.sh: $who's objects outside their namespace: $left" >&2; exit 1; }
done

# The instructor's view, with the admin kubeconfig.
KUBECONFIG=$KUBECONFIG_E2E "$VENV/bin/mllab" class --json >"$LOGS/class.json"
"$VENV/bin/python" - "$LOGS/class.json" "${three[@]}" <<'PY'
import json, sys
view = {row["learner"]: row for row in json.load(open(sys.argv[1]))["learners"]}
for who in sys.argv[2:]:
    lab = view[who]["labs"].get("2") or {}
    assert lab.get("passed") is True and lab.get("graded") == "yours", f"mllab class: lab 2 of {who} is {lab}"
print(f"class.sh: mllab class shows lab 2 passed for {', '.join(sys.argv[2:])} ({len(view)} learners listed)")
PY

# The prune: an empty roster with mllab_learners_prune deletes every learner namespace.
t=$SECONDS
apply_class true
left=$(kubectl get namespace -l mllab.io/namespace-role=learner -o name)
[[ -z $left ]] || { echo "class.sh: learner namespaces left after the prune: $left" >&2; exit 1; }
echo "class.sh: removed learners kept without mllab_learners_prune, all ${#roster[@]} deleted with it ($((SECONDS - t)) s)"
