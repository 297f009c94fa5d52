"""A user's own metric, `--metric FILE.py:NAME`: imported from its path, scored with the same bootstrap CIs as the
built-in metrics, and every way it can fail is one line naming the file, the function and (per row) the row."""

from __future__ import annotations

import sys

import pytest

from rung.core.errors import RungError
from rung.core.rows import normalise
from rung.engines import metrics

ROWS = [normalise({"input": f"q{i}", "output": f"a{i}", "weight": i / 4}) for i in range(5)]
METRIC_FILE = '''
from helper import SCALE   # a module beside the file: importable while the file loads


def weighted(prediction, reference, row):
    return SCALE * row["source"]["weight"] if prediction == reference else 0.0


def boom(prediction, reference, row):
    if row["input"] == "q3":
        raise KeyError("db")
    return 1.0


def too_big(prediction, reference, row):
    return 2.0


def not_a_number(prediction, reference, row):
    return float("nan") if row["input"] == "q1" else 0.5


def text(prediction, reference, row):
    return "1"


def passed(prediction, reference, row):
    return prediction == reference
'''


@pytest.fixture
def metric_file(tmp_path):
    (tmp_path / "helper.py").write_text("SCALE = 1.0\n")
    path = tmp_path / "my_metric.py"
    path.write_text(METRIC_FILE)
    return path


def test_a_user_metric_scores_rows_with_the_same_bootstrap_ci(metric_file):
    spec = f"{metric_file}:weighted"
    assert metrics.check_metric(spec) == spec
    assert metrics.choose_metric("style", ["a"], metric=spec) == spec
    outputs = ["a0", "a1", "no", "a3", "a4"]
    scored = metrics.score(outputs, [r["output"] for r in ROWS], spec, rows=ROWS)
    assert scored.per_row == [0.0, 0.25, 0.0, 0.75, 1.0]
    assert (scored.ci_low, scored.ci_high) == metrics.bootstrap_ci(scored.per_row)
    assert scored.mean == pytest.approx(0.4)
    assert str(metric_file.parent) not in sys.path, "the file's folder is on sys.path only while it loads"
    assert not (metric_file.parent / "__pycache__").exists()
    passed = metrics.score(outputs, [r["output"] for r in ROWS], f"{metric_file}:passed", rows=ROWS)
    assert passed.per_row == [1.0, 1.0, 0.0, 1.0, 1.0], "True and False count as 1 and 0"


@pytest.mark.parametrize("name, message", [
    ("boom", "raised KeyError: 'db' on row 3 (0-based)"),
    ("too_big", "returned 2.0 on row 0 (0-based); expected a number in [0, 1]"),
    ("not_a_number", "returned nan on row 1 (0-based); expected a number in [0, 1]"),
    ("text", "returned a str on row 0 (0-based); expected a number in [0, 1]"),
])
def test_a_failing_user_metric_is_one_line_naming_file_function_and_row(metric_file, name, message):
    with pytest.raises(RungError) as error:
        metrics.score(["a0"] * 5, [r["output"] for r in ROWS], f"{metric_file}:{name}", rows=ROWS)
    assert error.value.message == f"metric {metric_file}:{name} {message}"


@pytest.mark.parametrize("spec, message", [
    ("{dir}/absent.py:f", "no such file"),
    ("{dir}:f.py:g", "no such file"),
    ("{dir}/my_metric.py:weighte", 'the file has no function weighte (did you mean "weighted"?)'),
    ("{dir}/my_metric.py:METRIC", "the file has no function METRIC"),
])
def test_a_user_metric_that_cannot_load_is_one_line(metric_file, spec, message):
    spec = spec.format(dir=metric_file.parent)
    with pytest.raises(RungError) as error:
        metrics.check_metric(spec)
    assert error.value.message == f"metric {spec}: {message}"


def test_an_import_error_inside_the_file_is_one_line(tmp_path):
    path = tmp_path / "needs.py"
    path.write_text("import not_installed_anywhere\n\ndef f(p, r, row):\n    return 1.0\n")
    with pytest.raises(RungError) as error:
        metrics.check_metric(f"{path}:f")
    assert error.value.message == (f"metric {path}:f: importing the file failed: ModuleNotFoundError: "
                                   "No module named 'not_installed_anywhere'")


def test_the_prompting_step_reports_the_user_metric_as_its_headline(metric_file):
    from rung.engines.prompting import headline_metric, score

    spec = f"{metric_file}:weighted"
    result = score(["a0", "a1", "no", "a3", "a4"], [r["output"] for r in ROWS], metric=spec, rows=ROWS)
    assert result["weighted"] == 0.4 and "exact_match" in result
    assert headline_metric(result, spec) == "weighted"


def test_plan_settings_resolve_a_user_metric_beside_the_plan(tmp_path):
    from rung.core.user_metric import resolve_spec

    assert resolve_spec("metric.py:f", tmp_path) == f"{tmp_path.as_posix()}/metric.py:f"
    assert resolve_spec("/abs/metric.py:f", tmp_path) == "/abs/metric.py:f"
    assert resolve_spec("exact_match", tmp_path) == "exact_match"
