"""The client production lines install to publish inspection results to Loupe."""

from loupe_line.client import LineClient, LineStats, NotConnectedError, SpoolError
from loupe_line.settings import LineSettings
from loupe_line.spool import SpoolBusyError
from loupe_shared.contracts.results import new_result_id

__all__ = [
    "LineClient",
    "LineSettings",
    "LineStats",
    "NotConnectedError",
    "SpoolBusyError",
    "SpoolError",
    "new_result_id",
]
