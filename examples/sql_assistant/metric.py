"""Execution accuracy for the SQL assistant: run the answer and the reference on the same database and score 1
when they return the same rows. A user metric for rung (`--metric examples/sql_assistant/metric.py:execution_match`,
or the plan's `metric` setting): token F1 gives `salary < 50000` for `salary > 50000` full marks (normalisation
drops the sign) and most wrong queries about 0.5; execution gives them 0.

- The database is shop.sql (written by make_data.py), loaded once into an in-memory SQLite database.
- Read-only twice over: `PRAGMA query_only` and an authorizer that allows reading tables and calling functions
  only (no writes, ATTACH, PRAGMA or schema changes).
- A statement timeout: a progress handler interrupts any query that runs past TIMEOUT_S, so a runaway join
  cannot hang the gate; a result past MAX_ROWS rows counts as wrong.
- The answer must be one SQL query, as the system message asks: prose, code fences, several statements or
  SQL that fails all score 0. Rows compare as a multiset unless the reference has ORDER BY (then in order);
  column names are ignored, numbers compare rounded to 6 decimals (AVG gives floats).
- A reference that fails to run is a data error: it raises, and rung names the row.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections import Counter
from pathlib import Path

DATABASE_SCRIPT = Path(__file__).with_name("shop.sql")
TIMEOUT_S = 2.0
MAX_ROWS = 10_000
READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


class QueryFailed(Exception):
    """The query did not give a result: bad SQL, not a query, a timeout, too many rows."""


def _read_only(action: int, *_: object) -> int:
    return sqlite3.SQLITE_OK if action in READ_ACTIONS else sqlite3.SQLITE_DENY


@functools.lru_cache(maxsize=1)
def database() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    connection.executescript(DATABASE_SCRIPT.read_text(encoding="utf-8"))
    connection.execute("PRAGMA query_only = ON")
    connection.set_authorizer(_read_only)  # after the load: from here on, reading only
    return connection


def _value(value: object) -> object:
    if isinstance(value, float):
        value = round(value, 6)
        return int(value) if value.is_integer() else value
    return value


def run(sql: str) -> list[tuple]:
    """The query's rows, or QueryFailed."""
    connection = database()
    deadline = time.monotonic() + TIMEOUT_S
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1_000)
    try:
        cursor = connection.execute(sql)
        if cursor.description is None:
            raise QueryFailed("not a query")
        rows = cursor.fetchmany(MAX_ROWS + 1)
    except (sqlite3.Error, sqlite3.Warning, ValueError) as error:  # bad SQL, denied, interrupted, NUL bytes
        raise QueryFailed(str(error)) from None
    finally:
        connection.set_progress_handler(None, 1_000)
    if len(rows) > MAX_ROWS:
        raise QueryFailed(f"more than {MAX_ROWS} rows")
    return [tuple(_value(v) for v in row) for row in rows]


def execution_match(prediction: str, reference: str, row: dict) -> float:
    """1.0 when the predicted query returns the reference's rows, else 0.0."""
    try:
        want = run(reference)
    except QueryFailed as error:
        raise ValueError(f"the reference query fails on shop.sql: {error}") from None
    try:
        got = run(prediction.strip())
    except QueryFailed:
        return 0.0
    if ORDER_BY.search(reference):
        return float(got == want)
    return float(Counter(got) == Counter(want))
