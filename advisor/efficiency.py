"""How efficiently a run of a given size on a given GPU uses it: a point MFU and a band, fitted to public runs.

The data is advisor/public_runs.yaml (model, activated parameters, tokens, GPU, published GPU-hours, source). Each
run's MFU is 6 x N x D / (GPU-hours x 3600 x dense BF16 peak). For a run of N parameters on a GPU:

- the runs of the GPU's generation (advisor/gpus.yaml `generation`; all runs when the generation has none) are
  ranked by |log10 N - log10 N_run|, and the point MFU is the geometric mean of the `nearest` of them;
- s is the leave-one-out spread of that rule on the same runs: sqrt(mean((ln MFU_j - ln point_j without j)^2));
- the band is point x exp(-t s) .. point x exp(+t s), t the two-sided Student quantile for `level` with
  n - 1 degrees of freedom (n runs); its optimistic end stops one spread past the best run used (best x exp(s)):
  a 91% MFU that the statistics allow but no public run came near is not a budget anyone should plan on.
Degrees of freedom of the fit: per generation one fitted number (s); `nearest` and `level` are fixed settings in
the table, and nothing is tuned per run. A size outside the runs' range is marked `extrapolated`: the point is
then the nearest runs' MFU, and the band does not widen with the distance.
"""

from __future__ import annotations

import math
from typing import Any

Run = dict[str, Any]


def t_two_sided(t: float, dof: int) -> float:
    """P(|T| < t) for Student's t with a whole number of degrees of freedom (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(dof))
    cos2 = math.cos(theta) ** 2
    if dof % 2:
        total, term = 0.0, math.cos(theta)
        if dof > 1:
            total = term
            for k in range(1, (dof - 1) // 2):
                term *= 2 * k / (2 * k + 1) * cos2
                total += term
        return 2 / math.pi * (theta + math.sin(theta) * total)
    total = term = 1.0
    for k in range(1, dof // 2):
        term *= (2 * k - 1) / (2 * k) * cos2
        total += term
    return math.sin(theta) * total


def t_quantile(level: float, dof: int) -> float:
    """The t with P(|T| < t) = level (bisection; t_quantile(0.99, 10) = 3.169)."""
    low, high = 0.0, 1.0
    while t_two_sided(high, dof) < level:
        low, high = high, 2 * high
    while high - low > 1e-12 * high:
        middle = (low + high) / 2
        if t_two_sided(middle, dof) < level:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _nearest(runs: list[Run], params_b: float, k: int) -> list[Run]:
    x = math.log10(params_b)
    return sorted(runs, key=lambda run: abs(math.log10(run["params_b"]) - x))[:k]  # stable: ties keep table order


def _point(runs: list[Run], params_b: float, k: int) -> tuple[float, list[Run]]:
    near = _nearest(runs, params_b, k)
    return math.exp(sum(math.log(run["mfu"]) for run in near) / len(near)), near


def loo_spread(runs: list[Run], k: int) -> float:
    """RMS of ln(MFU_j / point_j), each point_j computed without run j."""
    squares = []
    for index, run in enumerate(runs):
        others = runs[:index] + runs[index + 1:]
        point, _ = _point(others, run["params_b"], min(k, len(others)))
        squares.append(math.log(run["mfu"] / point) ** 2)
    return math.sqrt(sum(squares) / len(squares))


def fitted_runs(table: dict[str, Any], generation: str, without: str | None = None) -> tuple[list[Run], bool]:
    """(runs the fit uses for `generation`, pooled?): its runs, else every run; `exclude`d runs never, nor `without`."""
    usable = [run for run in table["runs"] if not run.get("exclude") and run["name"] != without]
    own = [run for run in usable if run["generation"] == generation]
    enough = table["nearest"] + 2  # k runs to average plus two to measure a spread with one degree of freedom
    return (own, False) if len(own) >= enough else (usable, True)


def efficiency(gpu: str, params_b: float, table: dict[str, Any] | None = None,
               without: str | None = None) -> dict[str, Any]:
    """The point MFU, its band and the public runs behind them, for a run of `params_b` on `gpu` (a table name).

    `without`: a run's name left out (the leave-one-out check). The table defaults to advisor/public_runs.yaml."""
    from rung.advisor.estimate_math import gpu_spec
    from rung.advisor.public_runs import load_runs

    table = table or load_runs()
    spec = gpu_spec(gpu)
    runs, pooled = fitted_runs(table, spec["generation"], without)
    k = min(table["nearest"], len(runs) - 1)
    point, near = _point(runs, params_b, k)
    spread = loo_spread(runs, k)
    t = t_quantile(table["level"], len(runs) - 1)
    sizes = [run["params_b"] for run in runs]
    best = max(run["mfu"] for run in runs)
    return {
        "mfu": point,
        "mfu_low": point * math.exp(-t * spread),
        # the optimistic end: never more than one spread past the most efficient run used (nor past the peak)
        "mfu_high": min(1.0, point * math.exp(t * spread), best * math.exp(spread)),
        "generation": spec["generation"],
        "pooled": pooled,
        "runs": len(runs),
        "nearest": k,
        "level": table["level"],
        "t": t,
        "log_spread": spread,
        "params_range_b": [min(sizes), max(sizes)],
        "extrapolated": not min(sizes) <= params_b <= max(sizes),
        "best_mfu": best,
        "references": [reference(run) for run in near],
    }


def reference(run: Run) -> dict[str, Any]:
    keys = ("name", "params_b", "tokens", "gpu", "gpu_hours", "mfu", "source", "where")
    out = {key: round(run[key], 4) if key == "mfu" else run[key] for key in keys}
    out["achieved_tflops"] = round(run["mfu"] * run["peak_bf16_tflops"], 1)  # per GPU, by the 6N count
    return out


def basis_text(eff: dict[str, Any]) -> str:
    """'the 4 nearest in size of 13 public ampere runs' (or 'of all 23 public runs: none on blackwell')."""
    where = (f"of all {eff['runs']} public runs (none on {eff['generation']})" if eff["pooled"]
             else f"of {eff['runs']} public {eff['generation']} runs")
    return f"the {eff['nearest']} nearest in size {where}"


def like_text(ref: dict[str, Any]) -> str:
    """'Llama 2 7B: 184K a100-80gb-hours for 2T tokens (MFU 41%, 127 TFLOP/s)'."""
    from rung.advisor.estimate_math import human_count

    return (f"{ref['name']}: {human_count(ref['gpu_hours'])} {ref['gpu']}-hours for {human_count(ref['tokens'])} "
            f"tokens (MFU {ref['mfu']:.0%}, {ref['achieved_tflops']:.0f} TFLOP/s)")


def price(flops: float, spec: dict[str, Any], params_b: float, gpus: int, usd_per_gpu_hour: float | None,
          mfu: float | None = None) -> dict[str, Any]:
    """GPU-hours, wall-clock and dollars of `flops` on `spec`'s GPUs: the point and the band, with their basis.

    `mfu` given: the point uses it (mfu_source "given") and the band stays what the public runs support."""
    eff = efficiency(spec["name"], params_b)
    point = eff["mfu"] if mfu is None else mfu
    per_second = spec["peak_bf16_tflops"] * 1e12
    hours = {"gpu_hours_low": flops / (per_second * eff["mfu_high"]) / 3600,
             "gpu_hours": flops / (per_second * point) / 3600,
             "gpu_hours_high": flops / (per_second * eff["mfu_low"]) / 3600}
    out: dict[str, Any] = {"mfu": point, "mfu_source": "public runs" if mfu is None else "given",
                           "mfu_low": eff["mfu_low"], "mfu_high": eff["mfu_high"], **hours}
    for key, value in hours.items():
        out[key.replace("gpu_hours", "wall_hours")] = value / gpus
        out[key.replace("gpu_hours", "cost_usd")] = value * usd_per_gpu_hour if usd_per_gpu_hour is not None else None
    out["efficiency"] = {key: eff[key] for key in ("generation", "pooled", "runs", "nearest", "level", "t",
                                                   "log_spread", "params_range_b", "extrapolated", "best_mfu")}
    out["efficiency"]["basis"] = basis_text(eff)
    out["efficiency"]["fitted_mfu"] = eff["mfu"]
    out["references"] = eff["references"]
    return out
