"""`rung gate`: does the candidate (a fine-tuned model) beat the baseline (the cheaper rung) on the same rows?

    rows (--eval) ─► baseline answers (the row's system message + its best prompt: few-shot from --examples,
                     else zero-shot)
                  ─► candidate answers (a rung training output is asked exactly as it was trained: the row's
                     system message and turns through its own chat template; any other model gets the
                     baseline's prompt)
    both scored with one metric (engines/metrics.py) ─► scores with 95% CIs, the paired difference on the same rows
    local models ─► general-text perplexity of each (the forgetting check continued pretraining uses)
    SHIP when the candidate is significantly better and no forgetting warning fires; DON'T SHIP otherwise (and
    the reason says when the candidate is significantly worse).

Writes DIR/gate.json and DIR/gate.md. The CLI exits 0 for SHIP, 1 for DON'T SHIP, 2 for bad input.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json, atomic_write_text
from rung.core.generation import open_chat_model
from rung.core.protocol import StepContext, StepResult
from rung.core.rows import conversation
from rung.core.settings import GateSettings
from rung.engines import metrics
from rung.engines.judge import JUDGE, score_rows
from rung.engines.metric_options import implied_metric, metric_options
from rung.engines.probe import common_problems, model_problems, task_rows
from rung.engines.prompts import prompted
from rung.engines.progress import answer_rows
from rung.engines.request_checks import endpoint_options, out_problems

Echo = Callable[[str], None]
SHIP, DONT_SHIP = "SHIP", "DON'T SHIP"
GATE_MARKER = "gate.json"
WRITTEN = (GATE_MARKER, "gate.md", "gate_answers.jsonl", "judge_baseline.jsonl", "judge_candidate.jsonl")


@dataclass
class GateInputs:
    """The files a gate reads and writes; every knob is in GateSettings (core/settings.py)."""

    eval_path: Path
    out_dir: Path | None = None
    goal: str = ""                       # the answers' goal: picks the default metric
    examples_path: Path | None = None    # the baseline's few-shot prompt
    general_text: Path | None = None     # the forgetting check's text (default: held-out Python help topics)
    overwrite: bool = False              # write into a non-empty out_dir without gate.json anyway


def check_request(settings: GateSettings, inputs: GateInputs, problems: Sequence[str] = ()) -> list[str]:
    """Every problem, before any model loads or anything is written; `problems`: the settings' own (their
    resolve), reported with the rest."""
    problems = list(problems) + common_problems(settings, {"--max-rows": settings.max_rows, "--num-examples": settings.num_examples,
                                     "--concurrency": settings.concurrency})
    if not settings.ppl_warn_ratio > 1:  # also refuses NaN
        problems.append(f"ppl_warn_ratio {settings.ppl_warn_ratio}: expected a ratio above 1")
    for flag, spec in (("--baseline", settings.baseline), ("--candidate", settings.candidate)):
        problems += model_problems({flag: spec}, _role_backend(spec, settings.backend))
    if inputs.general_text is not None:
        from rung.core.inputs import input_problem

        problem = input_problem(inputs.general_text, "--general-text file")
        problems += [problem] if problem else []
    return problems + out_problems(inputs.out_dir, GATE_MARKER, WRITTEN, overwrite=inputs.overwrite)


def _role_backend(spec: str, backend: str) -> str:
    """--backend llama.cpp applies to the GGUF side: a trained candidate (a LoRA or merged folder) is no GGUF
    and answers in transformers."""
    from rung.core.gguf_in import is_gguf_spec

    return backend if backend != "llama.cpp" or is_gguf_spec(spec) else "transformers"


def trained_by_rung(spec: str) -> bool:
    """A folder rung's trainers wrote (they save resolved_config.yaml beside the model or adapter)."""
    folder = Path(spec).expanduser()
    return folder.is_dir() and (folder / "resolved_config.yaml").exists()


def conversations(settings: GateSettings, inputs: GateInputs, rows: list[dict[str, Any]],
                  examples: list[dict[str, Any]]) -> dict[str, list[list[dict[str, str]]]]:
    """What each model is asked, row by row. The baseline: the row's system message with its best prompt. The
    candidate, when rung trained it: exactly what training showed it before the answer (the row's system
    message and turns; its chat template renders them as TRL did, see trainers/sft.py), else the baseline's
    prompt. "as_trained" is the candidate's list when it is asked that way."""
    baseline = prompted(inputs.goal, examples, settings.num_examples, rows)
    as_trained = [conversation(row) for row in rows]
    candidate = as_trained if trained_by_rung(settings.candidate) else baseline
    return {"baseline": baseline, "candidate": candidate, "as_trained": as_trained}


def general_perplexity(spec: str, general_text: Path | None, trust_remote_code: bool) -> float:
    from rung.core.models import load_for_inference
    from rung.trainers import forgetting

    model, tokenizer = load_for_inference(spec, trust_remote_code=trust_remote_code)
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    blocks = forgetting.general_blocks(tokenizer, block_size=128, max_blocks=32, sep=sep, general_text=general_text)
    return forgetting.perplexity(model, blocks)


def gate(settings: GateSettings, inputs: GateInputs, echo: Echo = print, problems: Sequence[str] = ()) -> dict[str, Any]:
    """Score both models on the same rows and decide; writes gate.json and gate.md when out_dir is set. A gate
    that fails (a dead judge, Ctrl-C) removes the out_dir it created: no half-written verdict stays."""
    import shutil

    existed = inputs.out_dir is None or os.path.lexists(inputs.out_dir)
    try:
        return run_gate(settings, inputs, echo, problems)
    except BaseException:
        if not existed and inputs.out_dir.is_dir() and not inputs.out_dir.is_symlink():
            shutil.rmtree(inputs.out_dir, ignore_errors=True)
        raise


def run_gate(settings: GateSettings, inputs: GateInputs, echo: Echo, problems: Sequence[str] = ()) -> dict[str, Any]:
    from rung.core.endpoint import is_endpoint

    rows, examples = task_rows(check_request(settings, inputs, problems), inputs.eval_path, settings.max_rows, inputs.examples_path)
    references = [r["output"] for r in rows]
    wanted = implied_metric(settings.metric, settings.pattern, settings.schema)
    metric = JUDGE if wanted == JUDGE else metrics.choose_metric(inputs.goal, references, metric=wanted)
    options = metric_options(metric, settings.pattern, settings.schema)
    asked = conversations(settings, inputs, rows, examples)
    answers: dict[str, list[str]] = {}
    usage: dict[str, Any] = {}
    for role, spec in (("baseline", settings.baseline), ("candidate", settings.candidate)):
        model = open_chat_model(spec, trust_remote_code=settings.trust_remote_code,
                                backend=_role_backend(spec, settings.backend), **endpoint_options(settings))
        by = " through llama.cpp" if type(model).__name__ == "LlamaCppChat" else ""
        how = "as trained: its system message and turns" if asked[role] is asked["as_trained"] else "prompted"
        echo(f"  {role}: {spec}{by} on {len(rows)} rows ({how})")
        answers[role] = answer_rows(model, asked[role], max_new_tokens=settings.max_new_tokens, label=role, echo=echo)
        usage[role] = model.usage
    logs = inputs.out_dir  # judge logs are written (parents made) only once every verdict is in
    scores = {role: score_rows(answers[role], rows, metric, judge_model=settings.judge_model, rubric=settings.rubric,
                               log=logs / f"judge_{role}.jsonl" if logs is not None else None,
                               **endpoint_options(settings), **options) for role in answers}
    for role, scored in scores.items():
        if getattr(scored, "warning", None) and scored.warning():
            echo(f"  {role}: {scored.warning()}")
    diff = metrics.paired_difference(scores["candidate"].per_row, scores["baseline"].per_row)

    forgetting: dict[str, Any] = {"checked": False}
    if not is_endpoint(settings.baseline) and not is_endpoint(settings.candidate):
        base_ppl = general_perplexity(settings.baseline, inputs.general_text, settings.trust_remote_code)
        cand_ppl = general_perplexity(settings.candidate, inputs.general_text, settings.trust_remote_code)
        ratio = cand_ppl / base_ppl
        forgetting = {"checked": True, "baseline_ppl": round(base_ppl, 3), "candidate_ppl": round(cand_ppl, 3),
                      "ratio": round(ratio, 3), "warn_ratio": settings.ppl_warn_ratio, "warning": ratio > settings.ppl_warn_ratio}
    else:
        forgetting["why_not"] = "an endpoint model: perplexity needs the weights"

    verdict, reason = decide(diff, forgetting, settings.ppl_warn_ratio)
    result = {
        "verdict": verdict, "reason": reason,
        "metric": metric, "n": len(rows), "target": settings.target,
        "baseline": {"model": settings.baseline, "score": round(scores["baseline"].mean, 4),
                     "ci": [round(scores["baseline"].ci_low, 4), round(scores["baseline"].ci_high, 4)]},
        "candidate": {"model": settings.candidate, "score": round(scores["candidate"].mean, 4),
                      "ci": [round(scores["candidate"].ci_low, 4), round(scores["candidate"].ci_high, 4)]},
        **({"unparsed_verdicts": {role: scores[role].unparsed for role in scores}} if metric == JUDGE else {}),
        "difference": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in diff.items()},
        "forgetting": forgetting, "usage": usage,
    }
    if inputs.out_dir is not None:
        write(result, rows, answers, inputs.out_dir)
    return result


def decide(diff: dict[str, Any], forgetting: dict[str, Any], ppl_warn_ratio: float) -> tuple[str, str]:
    """(verdict, reason): SHIP when the paired difference (metrics.paired_difference) is significant and
    positive and no forgetting warning fired; DON'T SHIP otherwise, saying why (significantly worse, not
    significantly better, or forgetting despite a better score)."""
    better = diff["significant"] and diff["difference"] > 0
    worse = diff["significant"] and diff["difference"] < 0
    if not better:
        reason = (f"the candidate is {'significantly worse' if worse else 'not significantly better'}: difference "
                  f"{diff['difference']:+.3f}, 95% CI [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}], "
                  f"p = {diff['p_value']:.3g} ({diff['test']})")
    elif forgetting.get("warning"):
        reason = (f"forgetting: general-text perplexity rose {forgetting['ratio']:.2f}x "
                  f"(warning past {ppl_warn_ratio:.2f}x) although the task score improved")
    else:
        reason = (f"the candidate is better by {diff['difference']:+.3f} (95% CI [{diff['ci_low']:+.3f}, "
                  f"{diff['ci_high']:+.3f}], p = {diff['p_value']:.3g}, {diff['test']})"
                  + ("" if forgetting["checked"] else "; forgetting not checked (endpoint model)"))
    return (SHIP if better and not forgetting.get("warning") else DONT_SHIP), reason


def markdown(result: dict[str, Any]) -> str:
    base, cand, diff = result["baseline"], result["candidate"], result["difference"]
    lines = [f"# Gate: **{result['verdict']}**", "", result["reason"] + ".", "",
             f"{result['n']} held-out rows, metric `{result['metric']}`"
             + (f", target {result['target']:.2f}" if result.get("target") else "") + ".", "",
             "| | model | score | 95% CI |", "|---|---|---|---|",
             f"| baseline | `{base['model']}` | {base['score']:.3f} | [{base['ci'][0]:.3f}, {base['ci'][1]:.3f}] |",
             f"| candidate | `{cand['model']}` | {cand['score']:.3f} | [{cand['ci'][0]:.3f}, {cand['ci'][1]:.3f}] |",
             "", f"Paired difference (candidate − baseline, same rows): {diff['difference']:+.3f}, 95% CI "
             f"[{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}], p = {diff['p_value']:.3g} ({diff['test']})."]
    forgetting = result["forgetting"]
    if forgetting.get("checked"):
        lines += ["", f"General-text perplexity: baseline {forgetting['baseline_ppl']:.2f}, candidate "
                  f"{forgetting['candidate_ppl']:.2f} ({forgetting['ratio']:.2f}x; warning past "
                  f"{forgetting['warn_ratio']:.2f}x)."]
    else:
        lines += ["", f"Forgetting not checked: {forgetting.get('why_not', '')}."]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], rows: list[dict[str, str]], answers: dict[str, list[str]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "gate.json", result)
    records = [{"input": r["input"], "expected": r["output"], "baseline": answers["baseline"][i],
                "candidate": answers["candidate"][i]} for i, r in enumerate(rows)]
    atomic_write_text(out_dir / "gate_answers.jsonl", "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records))
    atomic_write_text(out_dir / "gate.md", markdown(result))


# ---------------------------------------------------------------------------------------------- engine `gate`


def run_step(step: dict[str, Any], ctx: StepContext) -> StepResult:
    """Engine `gate` for `rung run`: the from_step model against the plan's base model with its best prompt."""
    from rung.core.resolve import step_settings
    from rung.core.user_metric import resolve_spec

    settings = step_settings(GateSettings, step, ctx)
    source = step.get("from_step")
    trained = ctx.outputs.get(source, {}) if source else {}
    candidate = settings.candidate or trained.get("model_dir")
    baseline = settings.baseline or ctx.plan.get("base_model")
    eval_path = ctx.data_path("eval") or (Path(trained["heldout"]) if trained.get("heldout") else None)
    examples = ctx.data_path("examples") or ctx.data_path("train")
    problems = []
    if not candidate:
        problems.append(f"step {step.get('id')}: no candidate: set settings.candidate or from_step (a training step)")
    if not baseline:
        problems.append(f"step {step.get('id')}: no baseline: set settings.baseline or the plan's base_model")
    if eval_path is None:
        problems.append(f"step {step.get('id')}: no held-out rows: add data.eval (or let the training step hold "
                        "rows out: eval_fraction > 0)")
    if problems:
        raise RungError(problems)
    settings = dataclasses.replace(settings, baseline=str(baseline), candidate=str(candidate),
                                   metric=resolve_spec(settings.metric or trained.get("metric"), ctx.plan_dir),  # a
                                   # user metric beside the plan, or a grpo step's reward metric
                                   schema=_plan_schema(settings.schema, ctx))
    inputs = GateInputs(eval_path=Path(eval_path), out_dir=ctx.run_dir, goal=str(ctx.plan.get("goal") or ""),
                        examples_path=examples, overwrite=True)  # the run's own folder
    result = gate(settings, inputs, echo=print)
    metrics_out = {"verdict": result["verdict"], "baseline_score": result["baseline"]["score"],
                   "candidate_score": result["candidate"]["score"], "difference": result["difference"]["difference"],
                   "p_value": result["difference"]["p_value"], "metric": result["metric"], "rows": result["n"]}
    if result["forgetting"].get("checked"):
        metrics_out["general_ppl_ratio"] = result["forgetting"]["ratio"]
    return StepResult(outputs={"gate": str(ctx.run_dir / "gate.json"), "report": str(ctx.run_dir / "gate.md")},
                      metrics=metrics_out, summary=markdown(result).split("\n", 1)[1].strip()
                      + f"\n\n**Verdict: {result['verdict']}**" + next_move(result, str(baseline), replay_step(ctx.plan, source)))


def replay_step(plan: dict[str, Any], source: str | None) -> str | None:
    """The training step a replay retry sets: the gated step when it takes replay (sft, grpo, cpt), else the last
    earlier one that does (DPO has no replay: its SFT step does)."""
    steps = [s for s in plan.get("steps") or [] if isinstance(s, dict)]
    ids = [s.get("id") for s in steps]
    upto = steps[: ids.index(source) + 1] if source in ids else steps
    return next((s["id"] for s in reversed(upto) if s.get("engine") in ("sft", "grpo", "cpt")), None)


REPLAY_RATIO = 0.1  # the ratio the forgetting advice suggests; mixing as little as 1% back in has cured collapses


def next_move(result: dict[str, Any], baseline: str, step: str | None = None) -> str:
    """What a DON'T SHIP asks for next, by its reason; `step` is the plan's training step, for the --set form."""
    if result["verdict"] == SHIP:
        return ""
    if result["forgetting"].get("warning"):
        where = (f"`rung run plan.yaml --set {step}.replay=builtin --set {step}.replay_ratio={REPLAY_RATIO}`" if step
                 else f"`rung train sft|grpo|cpt ... --replay builtin --replay-ratio {REPLAY_RATIO}`")
        return (" — the candidate won on the task but forgot general text: retrain with replay, general rows mixed "
                f"back into training ({where}; or --replay FILE with your own general data), or with LoRA (it "
                "leaves the base weights alone), a lower learning rate or fewer steps, and gate again.")
    return f" — ship the cheaper rung (`{baseline}` with its prompt) until a candidate beats it."


def _plan_schema(schema: Any, ctx: StepContext) -> Any:
    """A step's schema setting: a mapping as written, or a file named relative to the plan's folder."""
    if isinstance(schema, str) and not Path(schema).expanduser().is_absolute():
        plan_dir = getattr(ctx, "plan_dir", None)
        return str(Path(plan_dir) / schema) if plan_dir else schema
    return schema
