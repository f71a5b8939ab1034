"""Errors the CLI turns into a clear message (what is wrong, and how to fix it) and an exit code."""

from __future__ import annotations


class MllabError(Exception):
    """A user-facing error: `message` names the bad value, `fix` says what to do."""

    exit_code = 2

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message


class UsageError(MllabError):
    """Bad command-line input (unknown lab, bad flag value)."""


class BackendUnavailable(MllabError):
    """The selected backend cannot run here (yet)."""

    exit_code = 3


class TrackingUnavailable(MllabError):
    """The MLflow tracking server cannot be reached or started."""

    exit_code = 4


class JobFailed(MllabError):
    """A training job (or distributed job) did not succeed within its retries and deadline."""

    exit_code = 5


class LabBusy(MllabError):
    """Another process is running (or resetting) this lab: it holds the lab's lock."""

    exit_code = 6


class HomeUnusable(MllabError):
    """MLLAB_HOME is not a usable directory (a file, under a file, or not writable)."""

    exit_code = 7


class StateUnwritable(HomeUnusable):
    """A state file under MLLAB_HOME cannot be written (permissions, read-only file system, disk full)."""
