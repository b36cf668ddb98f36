"""Test tiers: every test gets one marker, so `pytest -m unit` (`make test-fast`) runs the quick
tier alone. `data` tests are marked where they are written; the rest by where they live and
what they need: a real `bentoml serve` is `service`, a CLI run or a trained synthetic world
(an MLflow store with champions) is `integration`, everything else `unit`. A module may mark
itself `service` (pytestmark) when it starts its own server."""

from __future__ import annotations

import pytest

TRAINED = {"trained_world", "champions", "world", "env", "store", "champion_store"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("data") or item.get_closest_marker("service"):
            continue
        path = str(item.path)
        if "/tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif path.endswith("test_service.py") and "server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.service)
        elif TRAINED & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
