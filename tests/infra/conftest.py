"""Shared testinfra fixtures: each layer's tests first ask whether that layer is
deployed on the host (the layer's role writes /etc/mllab/layers/<layer>) and skip with
the reason when not. MLLAB_EXPECT_LAYERS=host,cluster,... turns those skips into
failures, for runs where the layer must be there (molecule verify, verify.yml)."""

from __future__ import annotations

import os

import pytest

LAYER_MARKERS = "/etc/mllab/layers"


def expected_layers() -> set[str]:
    return {x.strip() for x in os.environ.get("MLLAB_EXPECT_LAYERS", "").split(",") if x.strip()}


@pytest.fixture
def require_layer(host):
    def _require(layer: str) -> None:
        marker = f"{LAYER_MARKERS}/{layer}"
        if host.file(marker).exists:
            return
        reason = f"{layer} layer is not deployed on this host ({marker} is missing)"
        if layer in expected_layers():
            pytest.fail(reason + f", but MLLAB_EXPECT_LAYERS={os.environ['MLLAB_EXPECT_LAYERS']} expects it")
        pytest.skip(reason)

    return _require
