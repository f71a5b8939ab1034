# Sourced first by the e2e scripts: where the tier lives (E2E), the repository (ROOT), the
# build cache (CACHE, $E2E_CACHE), the Python venv (VENV) and the pinned versions.
# shellcheck shell=bash disable=SC2034 # the sourcing scripts use these
E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$E2E/../.." && pwd)
CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mllab-e2e}
VENV=${VENV:-$ROOT/.venv}
# shellcheck source=tests/e2e/versions.env
source "$E2E/versions.env"
