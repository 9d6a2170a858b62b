"""The retry policy with injected errors of each kind: which are retried, which raised at once,
and that the attempts stop after the last delay."""
import psycopg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.store.retry import RETRY_DELAYS, retryable, with_retry


def _db_error(orig: Exception, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("statement", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize("orig", [psycopg.OperationalError("server closed the connection"),
                                  psycopg.errors.DeadlockDetected("deadlock detected"),
                                  psycopg.errors.SerializationFailure("could not serialize"),
                                  psycopg.errors.AdminShutdown("terminating connection"),
                                  psycopg.errors.CannotConnectNow("the database system is starting up")])
def test_dropped_connections_restarts_and_deadlocks_are_retried(orig):
    assert retryable(_db_error(orig))


@pytest.mark.parametrize("exc", [IntegrityError("insert", {}, psycopg.errors.UniqueViolation("duplicate key")),
                                 _db_error(psycopg.errors.UndefinedTable("no such table")),
                                 ValueError("a bug"), psycopg.OperationalError("not wrapped by SQLAlchemy")])
def test_everything_else_is_raised_at_once(exc):
    assert not retryable(exc)
    calls = []

    def fail():
        calls.append(1)
        raise exc

    with pytest.raises(type(exc)):
        with_retry(fail, delays=(0, 0, 0))
    assert len(calls) == 1


def test_an_invalidated_connection_is_retried_whatever_the_error():
    assert retryable(_db_error(psycopg.errors.UndefinedTable("x"), invalidated=True))


def test_retries_until_success_then_stop_after_the_last_delay():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise _db_error(psycopg.errors.DeadlockDetected("deadlock"))
        return "done"

    assert with_retry(flaky, delays=(0, 0, 0, 0)) == "done" and len(attempts) == 3
    attempts.clear()

    def always():
        attempts.append(1)
        raise _db_error(psycopg.errors.DeadlockDetected("deadlock"))

    with pytest.raises(DBAPIError):
        with_retry(always, delays=(0, 0))
    assert len(attempts) == 3  # the first try and one per delay
    assert 25 <= sum(RETRY_DELAYS) <= 35  # about half a minute in all, as the README says


def test_the_retry_budget_cuts_the_delays():
    from app.store.retry import delays_within

    assert delays_within(31.5) == RETRY_DELAYS
    assert delays_within(4) == (0.5, 1, 2, 0.5)
    assert delays_within(0) == ()
