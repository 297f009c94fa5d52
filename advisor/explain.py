"""`rung estimate --explain`: the estimate's arithmetic with the user's numbers substituted, term by term.

Pure string work over estimator.estimate()'s result (advisor/efficiency.py has the fit it describes).
"""

from __future__ import annotations

from typing import Any


def _e(value: float) -> str:
    return f"{value:.3e}"


def compute_lines(result: dict[str, Any]) -> list[str]:
    n = result["params_b"] * 1e9
    lines = [f"FLOPs per token ({result['method']}, adapter {result['adapter']}; N = {_e(n)} parameters):"]
    width = max(len(term["term"]) for term in result["flops_terms"])
    for term in result["flops_terms"]:
        lines.append(f"  {term['term']:<{width}}  = {_e(term['flops_per_token'])}  ({term['share']:.1%})")
    lines.append(f"  {'total':<{width}}  = {_e(result['flops_per_token'])} per token")
    lines.append(f"FLOPs = {_e(result['flops_per_token'])} per token x {_e(result['tokens'])} tokens "
                 f"= {_e(result['flops'])}")
    return lines


def efficiency_lines(result: dict[str, Any]) -> list[str]:
    eff = result["efficiency"]
    refs = result["references"]
    if result["mfu_source"] == "given":
        lines = [f"MFU {result['mfu']:.3f}: given (--mfu). What public runs support is the band below."]
    else:
        lines = [f"MFU {result['mfu']:.3f} = geometric mean of the MFU of {eff['basis']}:"]
    for ref in refs:
        peak = _peak(ref["gpu"])
        lines.append(f"  {ref['name']}: 6 x {_e(ref['params_b'] * 1e9)} x {_e(ref['tokens'])} / "
                     f"({ref['gpu_hours']:,.0f} GPU-hours x 3600 x {_e(peak * 1e12)}) = {ref['mfu']:.3f}")
    if result["mfu_source"] != "given":
        product = " x ".join(f"{ref['mfu']:.3f}" for ref in refs)
        lines.append(f"  ({product}) ^ (1/{len(refs)}) = {result['mfu']:.3f}")
    return lines


def band_lines(result: dict[str, Any]) -> list[str]:
    eff = result["efficiency"]
    centre, t, s = eff["fitted_mfu"], eff["t"], eff["log_spread"]
    lines = [f"Band ({eff['level']:.0%}): s = {s:.3f}, the leave-one-out spread of ln(MFU) over the {eff['runs']} runs "
             f"(each priced from its {eff['nearest']} nearest others);",
             f"  t = {t:.3f}, Student's two-sided {eff['level']:.0%} quantile with {eff['runs'] - 1} degrees of freedom",
             f"  MFU low  = {centre:.3f} x exp(-{t:.3f} x {s:.3f}) = {result['mfu_low']:.3f}",
             f"  MFU high = min({centre:.3f} x exp({t:.3f} x {s:.3f}), best run {eff['best_mfu']:.3f} x exp({s:.3f}), "
             f"1) = {result['mfu_high']:.3f}"]
    if eff["extrapolated"]:
        low, high = eff["params_range_b"]
        lines.append(f"  ! {result['params_b']:g}B is outside the runs' sizes ({low:g}B-{high:g}B): the band does not "
                     "grow with that distance")
    return lines


def hours_lines(result: dict[str, Any]) -> list[str]:
    peak = _peak(result["gpu"]) * 1e12
    flops = _e(result["flops"])
    lines = ["GPU-hours = FLOPs / (peak FLOP/s x MFU) / 3600:"]
    for label, key, mfu_key in (("low  ", "gpu_hours_low", "mfu_high"), ("point", "gpu_hours", "mfu"),
                                ("high ", "gpu_hours_high", "mfu_low")):
        lines.append(f"  {label} = {flops} / ({_e(peak)} x {result[mfu_key]:.3f}) / 3600 = {result[key]:,.1f}")
    lines.append(f"wall-clock = GPU-hours / {result['gpus']} GPU{'s' if result['gpus'] > 1 else ''} = "
                 f"{result['wall_hours_low']:,.1f} / {result['wall_hours']:,.1f} / {result['wall_hours_high']:,.1f} h")
    if result.get("cost_usd") is not None:
        lines.append(f"cost = GPU-hours x ${result['usd_per_gpu_hour']:.2f} = ${result['cost_usd_low']:,.2f} / "
                     f"${result['cost_usd']:,.2f} / ${result['cost_usd_high']:,.2f}")
    return lines


def explain_lines(result: dict[str, Any]) -> list[str]:
    """The whole derivation of one estimate (no GPU: the FLOPs only)."""
    lines = compute_lines(result)
    if result.get("gpu_hours") is None:
        return lines + ["(no GPU: no time or cost)"]
    return lines + [""] + efficiency_lines(result) + [""] + band_lines(result) + [""] + hours_lines(result)


def _peak(gpu: str) -> float:
    from rung.advisor.estimate_math import gpu_spec

    return gpu_spec(gpu)["peak_bf16_tflops"]
