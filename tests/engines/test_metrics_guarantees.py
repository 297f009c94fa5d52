"""Task metrics (engines/metrics.py), stated as guarantees where the known-value table leaves room: JSON equality
is JSON's, token F1 is the harmonic mean of precision and recall, the default metric for a fixed format follows the
average answer length, and a regex rubric matches, refuses, and stops a runaway pattern the same way with or
without the `regex` package."""

from __future__ import annotations

import sys

import pytest

from rung.core.errors import RungError
from rung.engines import metrics
from rung.engines.metrics import choose_metric, json_match, regex, same_json, token_f1


def test_json_equality_compares_like_with_like():
    assert same_json("x", "x") and same_json(None, None) and same_json([1, {"a": "b"}], [1.0, {"a": "b"}])
    assert not same_json("x", "y")
    assert not same_json([1, 2], [1, 2, 3]) and not same_json([1, 2, 3], [1, 2])
    assert not same_json([], "") and not same_json(1, [1]) and not same_json([1], 1)
    assert not same_json({}, []) and not same_json("a", {"a": 1}) and not same_json({"a": 1}, "a")
    assert not same_json({"a": 1}, {"a": 2}) and not same_json({"a": 1}, {"b": 1})
    assert not same_json(1, "1") and not same_json("1", 1) and not same_json(None, "null")


def test_token_f1_is_the_harmonic_mean_of_precision_and_recall():
    assert token_f1("x y z w", "x y") == pytest.approx(2 * 0.5 * 1.0 / 1.5)   # precision 1/2, recall 1
    assert token_f1("x y", "x y z w") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0 and token_f1("x", "") == 0.0


@pytest.mark.parametrize("goal", ["domain_task", "facts", "schema"])
def test_a_fixed_formats_metric_follows_the_average_answer_length(goal):
    five, six = "w " * 5, "w " * 6
    assert choose_metric(goal, [five, five]) == "normalized_match"   # 5 words on average: the answer itself
    assert choose_metric(goal, [six]) == "token_f1"                  # over 5: overlap
    assert choose_metric(goal, [six, "w " * 4]) == "normalized_match"  # average 5, not the total
    assert choose_metric(goal, ["w " * 3, "w " * 3]) == "normalized_match"
    assert choose_metric(goal, []) == "normalized_match"


def test_a_broken_json_reference_is_named_in_the_error():
    with pytest.raises(RungError) as error:
        json_match('{"a": 1}', "{not json")
    assert error.value.message == "json_match: the reference is not valid JSON: '{not json'"


def test_the_regex_metric_needs_a_pattern_and_says_what_one_looks_like():
    with pytest.raises(RungError) as error:
        regex("x", "x")
    assert error.value.message == 'the regex metric needs a pattern, e.g. "^Thanks" or "^[^.!?]*[.!?]$" (one sentence)'


@pytest.mark.parametrize("with_regex_package", [True, False])
def test_a_regex_rubric_searches_the_trimmed_output(monkeypatch, with_regex_package):
    if not with_regex_package:
        monkeypatch.setitem(sys.modules, "regex", None)  # `import regex` raises ImportError: the re fallback
    assert regex("  Thanks, done  ", "", pattern="^Thanks") == 1.0
    assert regex("  Thanks, done  ", "", pattern="done$") == 1.0
    assert regex("No thanks", "", pattern="^Thanks") == 0.0


def test_a_runaway_pattern_is_stopped_and_named(monkeypatch):
    monkeypatch.setattr(metrics, "REGEX_TIMEOUT_S", 0.05)
    with pytest.raises(RungError) as error:
        regex("a" * 40 + "!", "", pattern="^(a|aa)+$")
    assert error.value.message == ("regex: the pattern '^(a|aa)+$' took over 0.05 s on one answer (nested repeats "
                                   "such as (a+)+ backtrack without end): simplify it")
