"""Backbone tests convert weights into a temporary cache, never the user's."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="package", autouse=True)
def temporary_cache(tmp_path_factory):
    """Package scope, so the other areas' caches (the arm64 rootfs, wheelhouses) stay where they were."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("bloomkit-cache")
        patch.setenv("BLOOMKIT_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def lite0_features():
    """One ImageNet Lite0 feature extractor for the tests that only read it."""
    from trainer import model_spec

    return model_spec.get("efficientnet_lite0").feature_extractor()
