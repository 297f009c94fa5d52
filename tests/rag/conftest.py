"""RAG test fixtures: a time bound per test (helpers are in rag_helpers.py)."""

from __future__ import annotations

import signal

import pytest


@pytest.fixture
def time_bound():
    """Fail a test that runs past `seconds` (a read blocked on a FIFO would otherwise hang the suite)."""
    def expire(signum, frame):
        raise TimeoutError("the test ran past its time bound (a blocked read?)")

    previous = signal.signal(signal.SIGALRM, expire)

    def arm(seconds: int) -> None:
        signal.alarm(seconds)

    yield arm
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(params=["folder", "postgresql"])
def location(request, tmp_path):
    """Where a test's index lives, once per store: a folder, then a table in the session's PostgreSQL."""
    if request.param == "folder":
        return str(tmp_path / "index")
    return request.getfixturevalue("pg_url")()
