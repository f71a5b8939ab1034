#!/usr/bin/env bash
# Every molecule run of `make molecule`, MOLECULE_JOBS at a time (default 2: a run
# spends most of its time waiting on `docker exec`, so two share two cores well).
#
#   tests/molecule/run-all.sh SCENARIO_FILE...   (roles/<role>/molecule/<scenario>/molecule.yml)
#
# Which distributions a scenario runs on: all of MOLECULE_DISTROS for the roles in
# MOLECULE_ALL_DISTROS_ROLES (default: base, the one role whose tasks differ between
# Debian releases: package names, services, apt sources); the first one for every
# other role and for every fake-* scenario, whose logic does not depend on the release.
# Each run has its own ephemeral directory and container names (MOLECULE_ROLE), so runs
# of the same scenario on two distributions never share state. A run's output goes to a
# log that is printed whole when the run ends (never interleaved); the first failure
# stops the runs not yet started, and the script fails naming it. When MLLAB_JUNIT_DIR is
# set (`make test`), each run's testinfra writes its JUnit XML there, named after the run
# (molecule-<role>-<scenario>-<distro>.xml, so that parallel runs never share a file), for
# scripts/skip-report; .config/molecule/config.yml hands it to pytest.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV_BIN=${VENV_BIN:-$ROOT/.venv/bin}
read -r -a distros <<<"${MOLECULE_DISTROS:-bookworm trixie}"
read -r -a all_distros_roles <<<"${MOLECULE_ALL_DISTROS_ROLES:-base}"
jobs=${MOLECULE_JOBS:-2}
[[ $# -gt 0 ]] || { echo "usage: $0 roles/<role>/molecule/<scenario>/molecule.yml..." >&2; exit 2; }

work=$(mktemp -d /tmp/mllab-molecule.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The runs, longest first (fake-cli's four containers take longest), so that the two
# lanes end close together.
runs=()
for f in "$@"; do
  role=$(cut -d/ -f2 <<<"$f") scenario=$(cut -d/ -f4 <<<"$f")
  use=("${distros[0]}")
  if [[ $scenario != fake-* && " ${all_distros_roles[*]} " == *" $role "* ]]; then use=("${distros[@]}"); fi
  for d in "${use[@]}"; do
    case $scenario in fake-*) weight=3 ;; *) [[ $role == base ]] && weight=2 || weight=1 ;; esac
    runs+=("$weight $role $scenario $d")
  done
done
mapfile -t runs < <(printf '%s\n' "${runs[@]}" | sort -s -k1,1nr | cut -d' ' -f2-)

one() { # one ROLE SCENARIO DISTRO: a molecule test, its output in $work/<id>.log
  local role=$1 scenario=$2 distro=$3 id rc=0 addopts=-rs
  id=$role-$scenario-$distro
  [[ -z ${MLLAB_JUNIT_DIR:-} ]] || addopts="-rs --junitxml=$MLLAB_JUNIT_DIR/molecule-$id.xml"
  [[ -e $work/failed ]] && { echo "=== molecule: $id not started (an earlier run failed)"; return 0; }
  # Timed like every CI stage (scripts/timed: a line in $MLLAB_STAGES when it is set).
  (cd "$ROOT/roles/$role" &&
    MOLECULE_ROLE=$role MOLECULE_DISTRO=$distro \
    MOLECULE_IMAGE=${MOLECULE_IMAGE:-mllab-systemd:$distro} \
    MOLECULE_EPHEMERAL_DIRECTORY=$work/ephemeral/$id MLLAB_MOLECULE_PYTEST_ADDOPTS=$addopts \
    PATH="$VENV_BIN:$PATH" "$ROOT/scripts/timed" "  molecule $id" "$VENV_BIN/molecule" test -s "$scenario") \
    >"$work/$id.log" 2>&1 || rc=$?
  {
    echo "=== molecule: role $role, scenario $scenario, $distro"
    cat "$work/$id.log"   # ends with scripts/timed's "passed in N s" or "FAILED"
    [[ $rc == 0 ]] || echo "$id" >>"$work/failed"
  } | flock "$work/print.lock" cat
}
export -f one
export work ROOT VENV_BIN

t0=$(date +%s)
printf '%s\n' "${runs[@]}" | xargs -P "$jobs" -L 1 bash -c 'one "$@"' _
if [[ -e $work/failed ]]; then
  echo "molecule: failed: $(tr '\n' ' ' <"$work/failed")" >&2
  exit 1
fi
echo "molecule: ${#runs[@]} runs passed in $(( $(date +%s) - t0 )) s ($jobs at a time)"
