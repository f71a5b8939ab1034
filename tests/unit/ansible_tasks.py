"""Walking Ansible task lists in the unit tests (the naming rule, the collections the roles call)."""

from __future__ import annotations


def tasks(items) -> list[dict]:
    """Every task of a task list, those inside block/rescue/always included."""
    found = []
    for task in items or []:
        if isinstance(task, dict):
            found.append(task)
            for key in ("block", "rescue", "always"):
                found += tasks(task.get(key))
    return found
