"""examples/sql_assistant/metric.py: execution accuracy on shop.sql, read-only and bounded in time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rung.core.errors import RungError
from rung.core.rows import load_task_rows
from rung.engines import metrics

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sql_assistant"
SPEC = f"{EXAMPLE / 'metric.py'}:execution_match"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"sql_example_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sql():
    return load("metric")


def test_the_committed_database_is_what_make_data_writes():
    assert (EXAMPLE / "shop.sql").read_text(encoding="utf-8") == load("make_data").database_script()


def test_every_reference_runs_returns_rows_and_matches_itself(sql):
    rows = load_task_rows(EXAMPLE / "data" / "train.jsonl") + load_task_rows(EXAMPLE / "data" / "eval.jsonl")
    assert len(rows) == 270
    for row in rows:
        assert sql.run(row["output"]), row["output"]
        assert sql.execution_match(row["output"], row["output"], row) == 1.0
    assert all("Schema: employees(" in row["system"] for row in rows), "the schema travels in the system message"


def test_a_wrong_query_scores_zero_where_token_overlap_gives_it_full_marks(sql):
    reference = "SELECT name FROM employees WHERE salary > 50000;"
    wrong = "SELECT name FROM employees WHERE salary < 50000;"
    assert metrics.token_f1(wrong, reference) == 1.0  # normalisation drops the comparison sign
    assert sql.execution_match(wrong, reference, {}) == 0.0
    assert sql.execution_match("select NAME from employees where 50000 < salary", reference, {}) == 1.0


def test_order_matters_only_when_the_reference_orders(sql):
    assert sql.execution_match("SELECT city, COUNT(*) FROM customers GROUP BY city ORDER BY city DESC",
                               "SELECT city, COUNT(*) FROM customers GROUP BY city;", {}) == 1.0
    top = "SELECT id, total FROM orders ORDER BY total DESC LIMIT 5;"
    assert sql.execution_match("SELECT id, total FROM orders ORDER BY total ASC LIMIT 5", top, {}) == 0.0
    assert sql.execution_match(
        "SELECT * FROM (SELECT id, total FROM orders ORDER BY total DESC LIMIT 5) ORDER BY id", top, {}) == 0.0


@pytest.mark.parametrize("answer", [
    "Here is the query: SELECT COUNT(*) FROM employees;",
    "```sql\nSELECT COUNT(*) FROM employees;\n```",
    "SELECT COUNT(*) FROM employees; DELETE FROM employees;",
    "DELETE FROM employees;",
    "UPDATE employees SET salary = 0;",
    "DROP TABLE employees;",
    "ATTACH DATABASE 'elsewhere.db' AS other;",
    "PRAGMA query_only = OFF;",
    "",
])
def test_anything_but_one_read_only_query_scores_zero_and_changes_nothing(sql, answer):
    reference = "SELECT COUNT(*) FROM employees;"
    before = sql.run(reference)
    assert sql.execution_match(answer, reference, {}) == 0.0
    assert sql.run(reference) == before


def test_a_runaway_query_is_interrupted(sql, monkeypatch):
    monkeypatch.setattr(sql, "TIMEOUT_S", 0.05)
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT COUNT(*) FROM n;"
    assert sql.execution_match(endless, "SELECT 1;", {}) == 0.0
    assert sql.execution_match("SELECT 1;", "SELECT 1;", {}) == 1.0, "the next query runs normally"


def test_through_rung_a_broken_reference_names_the_row():
    assert metrics.score(["SELECT 1;", "SELECT 2;"], ["SELECT 1;", "SELECT 2;"], SPEC).mean == 1.0
    with pytest.raises(RungError) as error:
        metrics.score(["SELECT 1;", "SELECT 1;"], ["SELECT 1;", "SELECT nope FROM nowhere;"], SPEC)
    assert error.value.message.startswith(f"metric {SPEC} raised ValueError: the reference query fails on shop.sql")
    assert error.value.message.endswith("on row 1 (0-based)")
