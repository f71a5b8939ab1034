#!/usr/bin/env bash
# Print the best controller Python: 3.12+ preferred (current ansible-core needs it),
# 3.11 accepted. Honours $PYTHON. Exits 1 with a clear message when none fits.
set -u
ok() { "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }
if [ -n "${PYTHON:-}" ]; then
  ok "$PYTHON" && { echo "$PYTHON"; exit 0; }
  echo "ERROR: PYTHON=$PYTHON is not a working Python >= 3.11 with venv." >&2; exit 1
fi
for c in python3.12 python3.13 \
         "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3 \
         "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3 \
         python3.11 python3; do
  p=$(command -v "$c" 2>/dev/null) || continue
  ok "$p" && { echo "$p"; exit 0; }
done
echo "ERROR: no Python >= 3.11 with the venv module found." >&2
echo "Fix: sudo apt-get install python3 python3-venv (Debian 12 / Ubuntu 24.04), or set PYTHON=/path/to/python3.12." >&2
exit 1
