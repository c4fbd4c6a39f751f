from tests.backup.conftest import make_installation
from tests.catalog.conftest import isolated_catalog, scratch_database
from tests.images.conftest import isolated_store

__all__ = ["isolated_catalog", "isolated_store", "make_installation", "scratch_database"]
