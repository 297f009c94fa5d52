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


# --------------------------------------------------------------------------------------- the paired test

from rung.engines.metrics import bootstrap_ci, chrf, json_schema, mcnemar_exact, paired_difference, score  # noqa: E402

CANDIDATE = [0.9, 0.4, 0.7, 0.8, 0.35, 0.95, 0.6, 0.75, 0.5, 0.7]
BASELINE = [0.6, 0.5, 0.5, 0.7, 0.55, 0.7, 0.55, 0.6, 0.55, 0.6]


def test_the_difference_is_the_mean_of_the_per_row_differences():
    result = paired_difference([1, 1, 0, 0], [0, 0, 0, 0])
    assert result["difference"] == 0.5 and result["n"] == 4 and result["test"] == "mcnemar_exact"


def test_the_interval_is_the_seeded_bootstrap_of_the_differences_with_the_resamples_asked():
    diffs = [a - b for a, b in zip(CANDIDATE, BASELINE)]
    result = paired_difference(CANDIDATE, BASELINE, resamples=300, seed=7)
    assert (result["ci_low"], result["ci_high"]) == bootstrap_ci(diffs, resamples=300, seed=7)
    assert paired_difference(CANDIDATE, BASELINE) == paired_difference(CANDIDATE, BASELINE, resamples=2000, seed=0)
    assert paired_difference(CANDIDATE, BASELINE, seed=3) == paired_difference(CANDIDATE, BASELINE, seed=3)


def test_the_bootstrap_p_value_resamples_whole_rows_sets():
    # mean difference 0.08, per-row spread ~0.16: about 1 in 10 resampled means lies 0.08 or more from it
    result = paired_difference(CANDIDATE, BASELINE)
    assert result["test"] == "paired_bootstrap" and 0.02 < result["p_value"] < 0.25


@pytest.mark.parametrize("ci, p, significant", [((0.1, 0.5), 0.01, True), ((-0.5, -0.1), 0.01, True),
                                               ((0.0, 0.5), 0.01, False), ((-0.5, 0.0), 0.01, False),
                                               ((-0.5, 0.5), 0.01, False), ((0.1, 0.5), 0.05, False),
                                               ((0.1, 0.5), 0.2, False)])
def test_significant_needs_an_interval_that_excludes_0_and_p_under_005(monkeypatch, ci, p, significant):
    monkeypatch.setattr(metrics, "bootstrap_ci", lambda values, **kwargs: ci)
    monkeypatch.setattr(metrics, "mcnemar_exact", lambda a, b: p)
    assert paired_difference([1, 0], [0, 0])["significant"] is significant


def test_unpaired_or_empty_scores_are_refused():
    with pytest.raises(RungError, match="^2 candidate scores but 1 baseline scores: both models must be scored on "
                                        "the same rows$"):
        paired_difference([1, 0], [1])
    with pytest.raises(RungError, match="^no rows to compare$"):
        paired_difference([], [])


def test_mcnemar_never_exceeds_1():
    assert mcnemar_exact([1, 0], [0, 1]) == 1.0
    assert mcnemar_exact([1, 1, 1, 1, 1, 1], [0] * 6) == pytest.approx(2 / 64)
    assert mcnemar_exact([1, 0], [1, 0]) == 1.0


# --------------------------------------------------------------------------------------- scoring

def test_a_score_is_the_mean_with_the_default_seeded_interval():
    outputs, references = ["a", "b", "c", "x", "y"], ["a", "b", "c", "d", "e"]
    result = score(outputs, references, "exact_match")
    assert result.mean == 0.6 and result.n == 5 and result.per_row == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert (result.ci_low, result.ci_high) == bootstrap_ci(result.per_row, resamples=2000, seed=0)
    assert result == score(outputs, references, "exact_match", resamples=2000, seed=0)


def test_an_empty_eval_set_is_refused():
    with pytest.raises(RungError, match="^no rows to score: the eval set is empty$"):
        score([], [], "exact_match")


def test_a_user_metric_gets_each_rows_record_or_its_reference(tmp_path):
    (tmp_path / "mine.py").write_text("def m(prediction, reference, row):\n"
                                      "    return float(row.get('weight', 0.5) if prediction == reference else 0)\n")
    spec = f"{tmp_path / 'mine.py'}:m"
    rows = [{"input": "q", "output": "a", "weight": 1.0}, {"input": "q", "output": "b", "weight": 0.25}]
    assert score(["a", "b"], ["a", "b"], spec, rows=rows).per_row == [1.0, 0.25]
    assert score(["a", "b"], ["a", "b"], spec).per_row == [0.5, 0.5]   # without rows: {"output": reference}


def test_chrf_gives_an_empty_answer_nothing_unless_the_reference_is_empty_too():
    assert chrf("", "") == 1.0 and chrf("", "the answer") == 0.0 and chrf("the answer", "") == 0.0


def test_json_schema_needs_a_schema_and_checks_against_it():
    with pytest.raises(RungError, match=r"^the json_schema metric needs a JSON Schema \(the plan's `schema` data\)$"):
        json_schema("{}", "")
    schema = {"type": "object", "required": ["a"]}
    assert json_schema('{"a": 1}', "", schema=schema) == 1.0 and json_schema('{"b": 1}', "", schema=schema) == 0.0


def test_json_booleans_equal_only_booleans():
    assert same_json(True, True) and same_json(False, False)
    assert not same_json(True, False) and not same_json(True, 1) and not same_json(1, True)
    assert not same_json(False, 0) and not same_json(0.0, False)


def test_the_bootstrap_interval_reads_the_25_and_975_percent_points_of_seeded_resampled_means():
    import math
    import random

    values = CANDIDATE
    rng = random.Random(0)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(2000))
    assert bootstrap_ci(values) == (means[50], means[1949])            # the 50th and 1,950th of 2,000
    assert bootstrap_ci(values) == bootstrap_ci(values, resamples=2000, seed=0, level=0.95)
    rng = random.Random(0)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(400))
    assert bootstrap_ci(values, resamples=400) == (means[10], means[math.ceil(0.975 * 400) - 1])   # 10th, 390th
    rng = random.Random(0)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(2000))
    # a 90% interval: the 5% and 95% points, as many means below the one as above the other (100 each)
    assert bootstrap_ci(values, level=0.9) == (means[100], means[1899])
    assert bootstrap_ci([0.5]) == (0.5, 0.5) and bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)
    with pytest.raises(RungError, match="^no rows to score$"):
        bootstrap_ci([])


def test_rouge_l_gives_an_empty_answer_nothing_unless_the_reference_is_empty_too():
    from rung.engines.metrics import rouge_l

    assert rouge_l("", "") == 1.0 and rouge_l("  ", "") == 1.0
    assert rouge_l("", "the answer") == 0.0 and rouge_l("the answer", "") == 0.0


def test_a_scores_interval_uses_the_resamples_asked_and_2000_by_default():
    per_row_outputs = [str(round(v, 2)) for v in CANDIDATE]
    result = score(per_row_outputs, per_row_outputs, "exact_match", resamples=300, seed=4)
    assert (result.ci_low, result.ci_high) == bootstrap_ci(result.per_row, resamples=300, seed=4)
    outputs = ["a b c", "a b", "x", "a", "b c d", "c"]
    references = ["a b c d", "a", "x y", "a", "d", "c d"]
    result = score(outputs, references, "token_f1")
    assert (result.ci_low, result.ci_high) == bootstrap_ci(result.per_row, resamples=2000, seed=0)


def test_a_user_metric_without_rows_sees_the_reference_as_the_rows_output(tmp_path):
    (tmp_path / "echo.py").write_text("def m(prediction, reference, row):\n"
                                      "    return float(row['output'] == reference)\n")
    assert score(["x", "y"], ["a", "b"], f"{tmp_path / 'echo.py'}:m").per_row == [1.0, 1.0]


# Eleven scores whose 2,001st resampled mean (seed 0) falls in a tail: 2,000 and 2,001 resamples give different
# intervals, so the default count is observable.
SPREAD = [0.414214, 0.732051, 0.0, 0.236068, 0.44949, 0.645751, 0.828427, 0.0, 0.162278, 0.316625, 0.464102]


def test_the_default_is_2000_resamples():
    assert bootstrap_ci(SPREAD, resamples=2000) != bootstrap_ci(SPREAD, resamples=2001)   # the data can tell
    assert bootstrap_ci(SPREAD) == bootstrap_ci(SPREAD, resamples=2000, seed=0)


def test_a_user_metrics_score_uses_2000_resamples_or_the_number_asked(tmp_path):
    (tmp_path / "table.py").write_text(f"SCORES = {SPREAD!r}\n\ndef m(prediction, reference, row):\n"
                                       "    return SCORES[int(reference)]\n")
    spec, n = f"{tmp_path / 'table.py'}:m", len(SPREAD)
    refs = [str(i) for i in range(n)]
    result = score(refs, refs, spec)
    assert result.per_row == SPREAD and (result.ci_low, result.ci_high) == bootstrap_ci(SPREAD, resamples=2000)
    result = score(refs, refs, spec, resamples=300, seed=2)
    assert (result.ci_low, result.ci_high) == bootstrap_ci(SPREAD, resamples=300, seed=2)
    assert bootstrap_ci(SPREAD, resamples=300, seed=2) != bootstrap_ci(SPREAD, seed=2)
