"""The advisor's commands: advise, plan, estimate, rules. Pure Python; start-up stays near `import click, yaml`.
(`rung ask` is cli/ask.py: it may offer a probe, which needs models.)

Modules are imported inside each command so `rung advise` loads only what it uses (no dataclasses-heavy
settings, no json unless --json).
"""

from __future__ import annotations

import click

from rung.advisor.render import gpu_hours_text, hours, money, recommendation_title, render_advice, wrap
from rung.core.errors import RungError
from rung.cli.options import Checked

METHOD_CHOICES = ("full", "lora", "qlora", "dpo", "cpt")


def check_base_model(base_model: str | None) -> None:
    """--base-model as the estimate reads it: a path must be a model folder or a GGUF, else one line (a missing
    folder would otherwise be sized as a default 7B model)."""
    from rung.core.gguf_in import is_gguf_spec

    if base_model and not base_model.startswith("builtin:") and not is_gguf_spec(base_model):
        from pathlib import Path

        folder = Path(base_model).expanduser()
        if (looks_like_path(base_model) or folder.exists()) and not (folder / "config.json").is_file():
            raise RungError(f"--base-model {base_model}: "
                            + ("no such folder" if not folder.exists() else "not a model folder (no config.json)")
                            + "; name a local model folder, a hub id or a size like Qwen2.5-7B, or give --params-b")


def with_measured_model(answers: dict, evidence: dict | None, base_model: str | None) -> dict:
    """The answers with the model to size: --base-model, else the local model the evidence measured (a probe of
    smollm2 sizes smollm2, not the answers' example model), else the answers' own base_model."""
    measured = (evidence or {}).get("model")
    if not base_model and isinstance(measured, str) and measured and not measured.startswith("openai:"):
        base_model = measured
    return {**answers, "base_model": base_model} if base_model else answers


# advise and plan (and estimate) read the same two files: one declaration of each option
ANSWERS_OPTION = click.option("--answers", "answers_path", required=True, type=click.Path(dir_okay=False),
                              help="The answers file (from `rung ask`, or written by hand).")
EVIDENCE_OPTION = click.option("--evidence", "evidence_path", default=None, type=click.Path(dir_okay=False),
                               help="Scores measured on your model and held-out rows (evidence.yaml, what `rung "
                                    "probe` writes); they decide prompting_result instead of the answer (a plan "
                                    "records them).")


def answers_and_evidence(answers_path: str, evidence_path: str | None) -> tuple[dict, dict | None]:
    """The validated answers, and the measured evidence when a file is given (advise and plan read both)."""
    from rung.advisor.answers import load_answers
    from rung.advisor.evidence import load_evidence

    return load_answers(answers_path), load_evidence(evidence_path) if evidence_path else None


@click.command()
@ANSWERS_OPTION
@EVIDENCE_OPTION
@click.option("--base-model", default=None, metavar="ID_OR_PATH",
              help="The model the estimate sizes (default: the model the evidence measured, else the answers' "
                   "base_model).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def advise(answers_path: str, evidence_path: str | None, base_model: str | None, as_json: bool) -> None:
    """Recommend a rung of the ladder for an answers file, with the reasons and an estimate."""
    from rung.advisor.rules import advise as run_rules

    answers, evidence = answers_and_evidence(answers_path, evidence_path)
    check_base_model(base_model)
    answers = with_measured_model(answers, evidence, base_model)
    result = run_rules(answers, evidence=evidence)
    if as_json:
        import json

        click.echo(json.dumps(result, indent=2, allow_nan=False))
    else:
        click.echo(render_advice(result, answers_path, evidence_path))


@click.command()
@ANSWERS_OPTION
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write plan.yaml and PLAN.md into (created if missing).")
@click.option("--base-model", default=None, metavar="ID_OR_PATH",
              help="Hub id, local folder, builtin:tiny, a .gguf file, ollama:NAME[:TAG] or smollm2-135m-instruct "
                   "(checked by rung run); overrides the answers' base_model.")
@click.option("--data", "data", multiple=True, metavar="[ROLE=]PATH",
              help="A data file or folder, optionally with its role (train, eval, preferences, corpus, documents, "
                   "queries, examples, schema). A bare PATH gets the route's main role. Repeatable.")
@EVIDENCE_OPTION
@click.option("--metric", default=None, metavar="FILE.py:NAME",
              help="Your own task metric, a function (prediction, reference, row) -> 0..1: the prompting and gate "
                   "steps score with it (written relative to the plan's folder).")
def plan(answers_path: str, out_dir: str, base_model: str | None, data: tuple[str, ...],
         evidence_path: str | None, metric: str | None) -> None:
    """Write the project plan: DIR/plan.yaml (what `rung run` executes) and DIR/PLAN.md (what people read)."""
    from rung.advisor.planner import write_plan

    answers, evidence = answers_and_evidence(answers_path, evidence_path)
    base_model = base_model or with_measured_model(answers, evidence, None).get("base_model")
    plan_path, md_path, plan_data = write_plan(answers, out_dir, base_model=base_model, data=list(data),
                                               evidence=evidence, metric=metric)
    click.echo(f"Recommendation: {recommendation_title(plan_data)}")
    for warning in plan_data.get("warnings") or []:
        click.echo(wrap("! " + warning, 2))
    click.echo(f"Wrote {plan_path}")
    click.echo(f"Wrote {md_path}")
    click.echo(f"Next: read {md_path}, then: rung run {plan_path}")


def _count(ctx: click.Context, param: click.Parameter, value):
    if value is None:
        return None
    from rung.advisor.estimator import parse_count

    try:
        number = parse_count(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if not 0 <= number < float("inf"):
        raise click.BadParameter(f"must be a finite number >= 0, got {number:g}")
    return number


def non_finite(value, name: str = "") -> list[str]:
    """The keys (a.b for nested ones) whose numbers are NaN or infinite: an estimate past float range."""
    import math

    if isinstance(value, float):
        return [] if math.isfinite(value) else [name]
    if isinstance(value, dict):
        return [key for k, v in value.items() for key in non_finite(v, f"{name}.{k}" if name else str(k))]
    if isinstance(value, (list, tuple)):
        return [key for i, v in enumerate(value) for key in non_finite(v, f"{name}[{i}]")]
    return []


def looks_like_path(spec: str) -> bool:
    """Written as a path (./x, /x, ~/x, a/b/c): the rule of core/models.py, which the advisor does not import."""
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1


@click.command()
@click.option("--params-b", type=Checked(float, gt=0), default=None,
              help="Model size in billions of parameters (activated parameters for a mixture of experts).")
@click.option("--base-model", default=None, metavar="ID_OR_PATH",
              help="Read the shape from a local folder's config.json or a name like Qwen2.5-0.5B (instead of --params-b).")
@click.option("--tokens", required=True, callback=_count, metavar="N",
              help="Training tokens (suffixes K, M, B, T: 14.8T). For DPO, chosen + rejected tokens together.")
@click.option("--gpu", required=True, metavar="NAME", help="GPU name from the table, e.g. h100, a100-80gb, l4, h800.")
@click.option("--gpus", type=Checked(int, minimum=1), default=1, show_default=True, help="Number of GPUs.")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="lora", show_default=True,
              help="full / lora / qlora SFT, dpo, or cpt (continued pretraining).")
@click.option("--adapter", type=click.Choice(("lora", "qlora", "full")), default=None,
              help="Adapter for dpo (default lora) and cpt (default full).")
@click.option("--seq-len", type=Checked(int, minimum=1), default=2048, show_default=True, help="Sequence length.")
@click.option("--micro-batch", type=Checked(int, minimum=1), default=1, show_default=True,
              help="Sequences (pairs for DPO) per GPU per step.")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in the backward pass.")
@click.option("--mfu", type=Checked(float, gt=0, maximum=1), default=None,
              help="Model FLOPs utilization to assume instead of what public runs of this GPU and size achieved "
                   "(advisor/public_runs.yaml); the band stays the public runs'.")
@click.option("--usd-per-gpu-hour", type=Checked(float, minimum=0), default=None,
              help="Override the table's price per GPU-hour.")
@click.option("--explain", is_flag=True, help="Also print the arithmetic: FLOPs term by term, the MFU from the "
              "nearest public runs, the band, GPU-hours and cost, with your numbers substituted (with --json: an "
              "\"explain\" list of lines).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def estimate(params_b, base_model, tokens, gpu, gpus, method, adapter, seq_len, micro_batch,
             gradient_checkpointing, mfu, usd_per_gpu_hour, explain, as_json) -> None:
    """Estimate compute, GPU-hours, cost and per-GPU memory of a training run."""
    from rung.advisor import estimator

    if params_b is None and base_model is None:
        raise RungError("give --params-b N (billions) or --base-model ID_OR_PATH")
    check_base_model(base_model)
    result = estimator.estimate(params_b=params_b, base_model=base_model, tokens=tokens, gpu=gpu, gpus=gpus,
                                method=method, adapter=adapter, seq_len=seq_len, micro_batch=micro_batch,
                                gradient_checkpointing=gradient_checkpointing, mfu=mfu,
                                usd_per_gpu_hour=usd_per_gpu_hour)
    overflow = non_finite(result)
    if overflow:
        raise RungError(f"the estimate overflows ({', '.join(overflow)} not finite): check --params-b and --tokens")
    if as_json:
        import json

        if explain:
            from rung.advisor.explain import explain_lines

            result["explain"] = explain_lines(result)
        click.echo(json.dumps(result, indent=2, allow_nan=False))
        return
    for line in estimate_text(result, seq_len, micro_batch, gradient_checkpointing):
        click.echo(line)
    if explain:
        from rung.advisor.explain import explain_lines

        click.echo("")
        for line in explain_lines(result):
            click.echo(line)


def estimate_text(result: dict, seq_len: int, micro_batch: int, gradient_checkpointing: bool) -> list[str]:
    """`rung estimate`'s text: one row per figure, GPU-hours, wall-clock and cost as point (band)."""
    from rung.advisor.efficiency import like_text
    from rung.advisor.estimator import human_count

    shape, gpus = result["shape"], result["gpus"]
    split = "; ".join(f"{t['term'].split(' (')[0]} {t['share']:.0%}" for t in result["flops_terms"])
    rows = [
        ("model", f"{result['params_b']:g}B parameters, {shape['layers']} layers, hidden {shape['hidden']}, "
                  f"vocab {shape['vocab']:,} ({shape['source']}{', like ' + shape['like'] if shape.get('like') else ''})"),
        ("method", f"{result['method']} (adapter {result['adapter']})"),
        ("tokens", human_count(result["tokens"])),
        ("FLOPs/token", f"{result['flops_per_token']:.3g}: {split}"),
        ("compute", f"{result['flops']:.3e} FLOPs"),
    ]
    if result["gpu_hours"] is not None:
        eff = result["efficiency"]
        basis = "your --mfu" if result["mfu_source"] == "given" else eff["basis"]
        rows += [
            ("GPU-hours", f"{gpu_hours_text(result['gpu_hours'])} (band {gpu_hours_text(result['gpu_hours_low'])}-"
                          f"{gpu_hours_text(result['gpu_hours_high'])}) on {result['gpu']}"),
            ("MFU", f"{result['mfu']:.0%} (band {result['mfu_low']:.0%}-{result['mfu_high']:.0%}, "
                    f"{eff['level']:.0%}): {basis}"),
            *[("like" if i == 0 else "", like_text(ref)) for i, ref in enumerate(result["references"][:2])],
            ("wall-clock", f"{hours(result['wall_hours'])} ({hours(result['wall_hours_low'])}-"
                           f"{hours(result['wall_hours_high'])}) on {gpus} GPU{'s' if gpus > 1 else ''}"),
            ("cost", f"{money(result['cost_usd'])} ({money(result['cost_usd_low'])}-{money(result['cost_usd_high'])}) "
                     f"at ${result['usd_per_gpu_hour']:.2f}/GPU-hour"),
        ]
        if eff["extrapolated"]:
            low, high = eff["params_range_b"]
            rows.append(("!", f"{result['params_b']:g}B is outside the public runs' sizes ({low:g}B-{high:g}B)"))
        if result["mfu_source"] == "given" and not result["mfu_low"] <= result["mfu"] <= result["mfu_high"]:
            rows.append(("!", f"MFU {result['mfu']:.0%} is outside what comparable public runs achieved"))
        rows.append(("memory/GPU", f"{result['memory_gb']:.1f} GB of {result['gpu_memory_gb']:g} GB: "
                                   f"{'fits' if result['fits'] else 'does NOT fit'} (seq {seq_len}, micro-batch "
                                   f"{micro_batch}{', checkpointing' if gradient_checkpointing else ''})"))
    lines = [f"{name:<12} {value}" for name, value in rows]
    lines.append(f"{'':<12} " + ", ".join(f"{k} {v:.1f}" for k, v in result["memory_breakdown"].items() if v))
    if result.get("reference_model"):
        lines.append(f"{'reference':<12} {result['reference_model']}")
    lines += [f"{'would fit':<12} {suggestion}" for suggestion in result["suggestions"]]
    return lines


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the thresholds and the rules as JSON.")
def rules(as_json: bool) -> None:
    """List the thresholds and every rule: id, condition, recommendation and reason, in the order they are tried."""
    from rung.advisor.rulebook import RULES_ENV, RULES_FILE, STAGES, load_rulebook
    from rung.advisor.rules import describe_recommend, describe_when, fill_thresholds

    book = load_rulebook()
    if as_json:
        import json

        click.echo(json.dumps({"thresholds": book.thresholds, "rules": book.rules}, indent=2))
        return
    if book.path != str(RULES_FILE):
        click.echo(f"Rules from {book.path} ({RULES_ENV}).")
    click.echo("Stages run in order: evidence, route, adapter and budget take the first matching rule; note takes every "
               "match.")
    click.echo("{braces} are filled in from your answers (rung advise shows the filled-in reasons).")
    click.echo("\n== thresholds ==  (a `when` test names one as $name, a reason as {name})")
    width = max(len(name) for name in book.thresholds)
    for name, value in book.thresholds.items():
        click.echo(f"${name:<{width}}  {value:,}" + (f" ({book.show(name)})" if book.show(name) != f"{value:,}" else ""))
    for stage in STAGES:
        click.echo(f"\n== {stage} ==")
        for rule in (r for r in book.rules if r["stage"] == stage):
            click.echo(f"{rule['id']}")
            click.echo(f"  when:      {describe_when(rule['when'], book.thresholds)}")
            click.echo(f"  recommend: {describe_recommend(rule.get('recommend') or {})}")
            click.echo(wrap(fill_thresholds(rule["because"], book.thresholds), 13, first="  because:   "))
