"""The public-runs table and the efficiency fit: every run inside the band computed without it, the point's accuracy
measured over the whole table, the shipped table's checks, and Student's quantile against printed t-tables."""

from __future__ import annotations

import math

import pytest

from rung.advisor.efficiency import efficiency, t_quantile
from rung.advisor.estimator import estimate
from rung.advisor.public_runs import RUNS_FILE, load_runs, validate_runs
from rung.core.errors import RungError

TABLE = load_runs()
FITTED = [run for run in TABLE["runs"] if not run.get("exclude")]


def published_hours(run: dict, mfu: float) -> float:
    """The GPU-hours 6 N D FLOPs take on the run's GPU at `mfu`."""
    return 6 * run["params_b"] * 1e9 * run["tokens"] / (run["peak_bf16_tflops"] * 1e12 * mfu) / 3600


def test_the_shipped_table_loads_with_sources():
    assert len(TABLE["runs"]) == 25 and len(FITTED) == 23
    for run in TABLE["runs"]:
        assert run["source"].strip() and run["where"].strip(), run["name"]
        assert 0 < run["mfu"] < 1, run["name"]
    names = {run["name"] for run in TABLE["runs"]}
    required = {"Llama 2 7B", "Llama 2 13B", "Llama 2 70B", "Llama 3 8B", "Llama 3 70B", "Llama 3.1 8B",
                "Llama 3.1 70B", "Llama 3.1 405B", "BLOOM 176B", "Falcon 180B", "DeepSeek-V3", "TinyLlama 1.1B",
                "Pythia 1.0B"}
    assert required <= names


def test_every_run_falls_inside_the_band_computed_without_it(capsys):
    rows, outside = [], []
    for run in FITTED:
        band = efficiency(run["gpu"], run["params_b"], without=run["name"])
        assert run["name"] not in {ref["name"] for ref in band["references"]}
        low_hours, point_hours = published_hours(run, band["mfu_high"]), published_hours(run, band["mfu"])
        high_hours = published_hours(run, band["mfu_low"])
        inside = low_hours <= run["gpu_hours"] <= high_hours
        rows.append(f"{run['name']:<20} published {run['gpu_hours']:>12,.0f}  point {point_hours:>12,.0f}  "
                    f"band {low_hours:>12,.0f} - {high_hours:>12,.0f}  {'in' if inside else 'OUT'}")
        if not inside:
            outside.append(run["name"])
    with capsys.disabled():
        print("\nleave-one-out (each run priced from the table without it):\n" + "\n".join(rows))
    assert not outside, f"outside the band computed without them: {outside}"


def point_error(run: dict, **kwargs) -> float:
    """(estimated - published) / published GPU-hours of a run, priced as a full pretraining run on its GPU."""
    if kwargs:
        band = efficiency(run["gpu"], run["params_b"], **kwargs)
        estimated = published_hours(run, band["mfu"])
    else:
        estimated = estimate(params_b=run["params_b"], tokens=run["tokens"], gpu=run["gpu"], method="full")["gpu_hours"]
    return estimated / run["gpu_hours"] - 1


def test_point_estimate_within_25_percent_for_at_least_80_percent_of_the_runs(capsys):
    """In the table (each run's point uses the full table, itself among its 4 nearest): >= 80% within +-25%.
    Left out of the table (the same check as for a run the table has never seen), the fraction is lower; it is
    measured here and reported in BENCHMARKS.md."""
    inside = [abs(point_error(run)) <= 0.25 for run in FITTED]
    held_out = [abs(point_error(run, without=run["name"])) <= 0.25 for run in FITTED]
    fraction, held_out_fraction = sum(inside) / len(inside), sum(held_out) / len(held_out)
    with capsys.disabled():
        print(f"\npoint within +-25%: {sum(inside)}/{len(inside)} = {fraction:.0%} in the table; "
              f"{sum(held_out)}/{len(held_out)} = {held_out_fraction:.0%} left out")
    assert fraction >= 0.8
    assert held_out_fraction >= 0.6  # 15/23 when this was written: the runs' own scatter, not a tuned figure


@pytest.mark.parametrize("name, tokens, published", [("DeepSeek-V3", 14.8e12, 2.664e6),
                                                     ("Llama 3.1 405B", 15.6e12, 30.84e6)])
def test_the_two_calibration_runs_still_hold(name, tokens, published):
    run = next(r for r in TABLE["runs"] if r["name"] == name)
    result = estimate(params_b=run["params_b"], tokens=tokens, gpu=run["gpu"], method="full")
    assert result["gpu_hours"] == pytest.approx(published, rel=0.25)
    assert result["gpu_hours_low"] <= published <= result["gpu_hours_high"]


def test_excluded_runs_stay_in_the_table_but_out_of_the_fit():
    excluded = [run for run in TABLE["runs"] if run.get("exclude")]
    assert {run["name"] for run in excluded} == {"Llama 3.2 1B", "Llama 3.2 3B"}
    band = efficiency("h100", 1.23)
    assert "Llama 3.2 1B" not in {ref["name"] for ref in band["references"]}
    assert band["runs"] == sum(1 for run in FITTED if run["generation"] == "hopper")


def test_point_is_the_geometric_mean_of_the_nearest_runs_and_inside_its_band():
    band = efficiency("h800", 37)
    refs = band["references"]
    assert [ref["name"] for ref in refs][:3] == ["DeepSeek-V3", "DeepSeek-V2", "DeepSeek 67B"]
    assert band["mfu"] == pytest.approx(math.prod(ref["mfu"] for ref in refs) ** (1 / len(refs)), rel=1e-3)
    assert band["mfu_low"] < band["mfu"] < band["mfu_high"] <= 1
    assert band["mfu_low"] == pytest.approx(band["mfu"] * math.exp(-band["t"] * band["log_spread"]))


def test_a_generation_without_runs_uses_every_run_and_says_so():
    band = efficiency("b200", 7)
    assert band["pooled"] and band["runs"] == len(FITTED)
    tiny = efficiency("a100", 0.135)
    assert tiny["extrapolated"] and not efficiency("a100", 7)["extrapolated"]


@pytest.mark.parametrize("level, dof, printed", [(0.99, 1, 63.657), (0.99, 10, 3.169), (0.95, 2, 4.303),
                                                 (0.99, 12, 3.055), (0.95, 30, 2.042), (0.90, 5, 2.015)])
def test_student_quantile_matches_printed_tables(level, dof, printed):
    assert t_quantile(level, dof) == pytest.approx(printed, abs=5e-4)


def good_run(**changes) -> dict:
    run = {"name": "Run A", "params_b": 7, "tokens": "2.0T", "gpu": "a100", "gpu_hours": 184320,
           "source": "a model card", "where": "a table"}
    return {**run, **changes}


def test_validation_reports_every_problem_at_once(tmp_path):
    bad = {"fit": {"nearest": 0, "levle": 0.9, "level": 1.5},
           "runs": [good_run(sorce="x"), good_run(name="Run B", gpu="h10", params_b=-1),
                    {k: v for k, v in good_run(name="Run C").items() if k != "where"}, good_run(name="run a"),
                    good_run(name="Run D", gpu_hours="lots")],
           "extra": 1}
    problems = validate_runs(bad, "runs.yaml")
    text = "\n".join(problems)
    for expected in ['unknown key "extra"', 'fit: unknown key "levle" (did you mean "level"?)',
                     "fit.nearest: expected a whole number >= 1", "fit.level: expected a probability in (0, 1)",
                     'run 1 (Run A): unknown key "sorce" (did you mean "source"?)',
                     'run 2 (Run B): gpu: unknown GPU "h10" (did you mean "h100-sxm"?)',
                     "run 2 (Run B): params_b: expected a positive number", "run 3 (Run C): missing where",
                     "run 4 (run a): name: listed twice", "run 5 (Run D): gpu_hours: expected a positive number"]:
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert len(problems) == 10
    path = tmp_path / "runs.yaml"
    import yaml

    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(RungError) as error:
        load_runs(path)
    assert error.value.message.count("\n") == 9


def test_the_shipped_table_has_no_problems():
    from rung.core.fileio import read_yaml

    assert validate_runs(read_yaml(RUNS_FILE), str(RUNS_FILE)) == []
