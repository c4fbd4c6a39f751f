from pathlib import Path

import pytest

from tests.monitoring.promtool import promtool as fetch_promtool


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool from Debian's `prometheus` package, unpacked into the checkout's cache."""
    return fetch_promtool()
