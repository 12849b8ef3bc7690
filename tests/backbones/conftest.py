"""Backbone tests convert weights into a temporary cache, never the user's."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def temporary_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("bloomkit-cache")
        patch.setenv("BLOOMKIT_CACHE", str(root))
        yield root
