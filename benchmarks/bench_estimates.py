"""The estimator against the public runs it is fitted to: each run priced from the table without it (leave-one-out).

For every run in advisor/public_runs.yaml: the published GPU-hours, the point and band computed without the run,
whether the run falls inside, the point computed with it (in the table), and the fixed MFU 0.40 the estimator used
before the fit. Pure Python, well under a second. Prints a markdown table (the estimates section of BENCHMARKS.md).

    python benchmarks/bench_estimates.py
"""

from __future__ import annotations

from rung.advisor.efficiency import efficiency
from rung.advisor.public_runs import load_runs

FIXED_MFU = 0.40  # the estimator's efficiency before the public-runs fit


def hours(run: dict, mfu: float) -> float:
    return 6 * run["params_b"] * 1e9 * run["tokens"] / (run["peak_bf16_tflops"] * 1e12 * mfu) / 3600


def row(run: dict) -> tuple[str, bool, bool, bool, bool]:
    held_out = efficiency(run["gpu"], run["params_b"], without=run["name"])
    in_table = efficiency(run["gpu"], run["params_b"])
    low, point, high = hours(run, held_out["mfu_high"]), hours(run, held_out["mfu"]), hours(run, held_out["mfu_low"])
    published = run["gpu_hours"]
    inside = low <= published <= high
    errors = [point / published - 1, hours(run, in_table["mfu"]) / published - 1, hours(run, FIXED_MFU) / published - 1]
    text = (f"| {run['name']} | {run['gpu']} | {published:,.0f} | {point:,.0f} ({errors[0]:+.0%}) | "
            f"{low:,.0f} - {high:,.0f} | {'yes' if inside else '**no**'} | {errors[1]:+.0%} | {errors[2]:+.0%} |")
    return text, inside, abs(errors[0]) <= 0.25, abs(errors[1]) <= 0.25, abs(errors[2]) <= 0.25


def main() -> None:
    table = load_runs()
    fitted = [run for run in table["runs"] if not run.get("exclude")]
    rows = [row(run) for run in fitted]
    n = len(rows)
    counts = [sum(r[i] for r in rows) for i in range(1, 5)]
    print("| run | GPU | published GPU-hours | point, left out | band, left out | in band? | point, in table | "
          "fixed MFU 0.40 |")
    print("|---|---|---|---|---|---|---|---|")
    for text, *_ in rows:
        print(text)
    print(f"\nInside the band computed without them: **{counts[0]}/{n}**. Point within ±25%: {counts[1]}/{n} "
          f"({counts[1] / n:.0%}) left out, {counts[2]}/{n} ({counts[2] / n:.0%}) in the table; the fixed MFU 0.40: "
          f"{counts[3]}/{n} ({counts[3] / n:.0%}).")
    excluded = [run for run in table["runs"] if run.get("exclude")]
    for run in excluded:
        band = efficiency(run["gpu"], run["params_b"])
        print(f"Excluded, {run['name']}: published {run['gpu_hours']:,.0f}, the fit would say "
              f"{hours(run, band['mfu']):,.0f} ({hours(run, band['mfu_high']):,.0f} - {hours(run, band['mfu_low']):,.0f}).")


if __name__ == "__main__":
    main()
