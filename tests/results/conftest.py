import pytest

from loupe_shared.kit.auth import Role
from tests.backup.conftest import make_installation
from tests.catalog.conftest import isolated_catalog, scratch_database
from tests.conftest import TokenMaker, auth
from tests.images.conftest import isolated_store

__all__ = ["isolated_catalog", "isolated_store", "make_installation", "scratch_database"]


@pytest.fixture(scope="module")
def line(make_token: TokenMaker) -> dict[str, str]:
    """A production line's token."""
    return auth(make_token(Role.LINE, "results-line"))


@pytest.fixture(scope="module")
def viewer(make_token: TokenMaker) -> dict[str, str]:
    """A viewer's token."""
    return auth(make_token(Role.VIEWER, "results-viewer"))
