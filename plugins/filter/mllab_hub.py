"""JupyterHub decisions for ML Lab Kit (roles/jupyterhub): the learners' hub passwords as salted
PBKDF2 hashes, so the hub's Secret holds no password. Pure functions (standard library only), used
as Ansible filters, unit tested in tests/unit/test_jupyterhub_role.py, where the authenticator of
the rendered jupyterhub_config.py checks real passwords against them.

A hash reads ``pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>``. The salt of a learner is
HMAC-SHA256(salt key, learner name) cut to 16 bytes: distinct per learner and per lab (the salt key
is a generated secret of the lab), and the same on every run, so a second run leaves the Secret as
it was (idempotence) without storing salts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

SCHEME = "pbkdf2_sha256"


def mllab_hub_password_hash(password: str, name: str, salt_key: str, iterations: int = 600_000) -> str:
    """The stored form of `name`'s `password` (see the module's docstring)."""
    if not isinstance(password, str) or not password:
        raise ValueError(f"the hub password of {name!r} is empty")
    iterations = int(iterations)
    if iterations < 1:
        raise ValueError(f"jupyterhub_password_iterations = {iterations!r} must be a positive number")
    salt = hmac.new(salt_key.encode(), name.encode(), hashlib.sha256).digest()[:16]
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join([SCHEME, str(iterations), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def mllab_hub_password_hashes(passwords: Mapping[str, Any], salt_key: str, iterations: int = 600_000) -> dict[str, str]:
    """{learner: stored hash} for {learner: password}."""
    return {name: mllab_hub_password_hash(str(pw), name, salt_key, iterations) for name, pw in passwords.items()}


class FilterModule:
    def filters(self):
        return {
            "mllab_hub_password_hashes": mllab_hub_password_hashes,
        }
