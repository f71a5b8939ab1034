"""Puts the code under test on the import path once for every unit test: the filter
plugins (plugins/filter, imported as plain modules) and the platform test harness
(tests/unit/platform/harness.py) and the CLI output samples (tests/unit/samples)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT / "plugins" / "filter", ROOT / "tests" / "unit" / "platform", ROOT / "tests" / "unit"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# Every ansible-playbook a unit test starts keeps facts in memory: ansible.cfg's jsonfile cache
# (.cache/facts, for `make site`) would be a run output in the checkout (scripts/clean-check).
os.environ.setdefault("ANSIBLE_CACHE_PLUGIN", "memory")
