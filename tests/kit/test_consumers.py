"""How the kit's consumers tell an outage from a message that can never be stored."""

import asyncpg
import pytest

from loupe_shared.kit.consumers import _header_text, is_passing, is_refused, retry_delay


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


PASSING = [
    ConnectionResetError(104, "reset"),
    TimeoutError(),
    OSError("no route to host"),
    asyncpg.exceptions.CannotConnectNowError("starting up"),  # 57P03
    asyncpg.exceptions.AdminShutdownError("terminating"),  # 57P01
    asyncpg.exceptions.DeadlockDetectedError("deadlock"),  # 40P01
    asyncpg.exceptions.DiskFullError("disk full"),  # 53100
    asyncpg.exceptions.ReadOnlySQLTransactionError("read only"),  # 25006
    asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
    _caused(RuntimeError("wrapped"), ConnectionResetError(104, "reset")),
]
REFUSED = [
    asyncpg.exceptions.NumericValueOutOfRangeError("out of range"),  # 22003
    asyncpg.exceptions.CharacterNotInRepertoireError("NUL"),  # 22021
    asyncpg.exceptions.UntranslatableCharacterError("\\u0000"),  # 22P05
    asyncpg.exceptions.DataError("invalid input for query argument"),
    OverflowError("value out of int32 range"),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    _caused(RuntimeError("wrapped"), OverflowError("date value out of range")),
]
NEITHER = [
    asyncpg.exceptions.CheckViolationError("check"),  # 23514: the caller decides
    asyncpg.exceptions.InternalServerError("internal"),  # XX000
    asyncpg.exceptions.InsufficientPrivilegeError("permission denied"),  # 42501
    RuntimeError("a bug"),
]


@pytest.mark.parametrize("exc", PASSING, ids=repr)
def test_outages_are_passing_and_never_refused(exc: BaseException) -> None:
    assert is_passing(exc)
    assert not is_refused(exc)


@pytest.mark.parametrize("exc", REFUSED, ids=repr)
def test_data_exceptions_are_refused_and_not_passing(exc: BaseException) -> None:
    assert is_refused(exc)
    assert not is_passing(exc)


@pytest.mark.parametrize("exc", NEITHER, ids=repr)
def test_other_failures_are_neither(exc: BaseException) -> None:
    assert not is_passing(exc)
    assert not is_refused(exc)


def test_a_caller_may_take_constraints_for_refusals() -> None:
    assert is_refused(asyncpg.exceptions.CheckViolationError("check"), ("22", "23"))
    assert not is_refused(asyncpg.exceptions.InternalServerError("x"), ("22", "23"))


def test_retry_delays_double_up_to_a_minute() -> None:
    assert [retry_delay(d) for d in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert [retry_delay(d, 0.1) for d in (1, 2)] == [0.1, 0.2]
    assert retry_delay(40) == 60.0


def test_a_reason_header_is_printable_ascii_on_one_line() -> None:
    text = _header_text("bad\x00 value\r\nnext: é \ud800" + "x" * 1000)
    assert text.isascii()
    assert all(" " <= c <= "~" for c in text)
    assert len(text) == 500
    assert text.startswith("bad  value  next: \\xe9 \\ud800")
