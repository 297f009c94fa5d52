"""The `grpo` engine and the reward: a metric NAME of engines/metrics.py (the code the probe and the gate score with)
turned into the function trainers/grpo.py rewards completions with.

    reward_for(name, options)        (outputs, references) -> rewards, through metrics.score (its lookup, its checks)
    pick_metric(goal, rows, ...)     --metric, else the metric the gate would choose for these rows
    run_step(step, ctx)              the `grpo` engine for `rung run` (core/protocol.py)
    main()                           `python -m rung.engines.grpo --job RUN/grpo_job.json`: one launched process

The trainers layer sits below this one (pyproject.toml's import-linter layers), so the metric is resolved here and
handed down; a launched run's workers start this module, not trainers/worker.py, for the same reason.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from rung.core.errors import RungError
from rung.engines import metrics

Score = Callable[[list[str], list[str]], list[float]]
WORKER_MODULE = "rung.engines.grpo"
REPLAY_METRIC = "token_f1"  # replay rows (general text) are rewarded by word overlap with their answer


def reward_for(name: str, options: dict[str, Any] | None = None) -> Score:
    """The metric `name` as a reward. Only the per-row scores are used: no bootstrap per step (resamples=1)."""
    metrics.check_metric(name)
    options = dict(options or {})

    def score(outputs: list[str], references: list[str]) -> list[float]:
        return metrics.score(outputs, references, name, resamples=1, **options).per_row

    return score


def pick_metric(goal: str, references: list[str], metric: str | None, options: dict[str, Any] | None) -> str:
    """--metric when given, else what the gate chooses for the same goal and references (metrics.choose_metric).
    The metric is tried on one reference before any model loads, so a bad option or reference fails at once."""
    chosen = metrics.choose_metric(goal, [r for r in references if r], (options or {}).get("schema"), metric=metric)
    sample = next((r for r in references if r), "")
    reward_for(chosen, options)([sample], [sample])
    return chosen


def prepare(settings: Any, data_path: Path, eval_path: Path | None, goal: str) -> tuple[str, Score, Score]:
    """(metric, reward, replay reward) for a run: the rows are read (and checked) once here to pick the metric."""
    from rung.trainers import data

    rows = data.load_examples(data_path, "grpo")
    references = [row["reference"] for row in rows]
    metric = pick_metric(goal, references, settings.metric, settings.metric_options)
    if metric not in ("json_valid", "json_schema", "regex") and not all(references):
        missing = sum(1 for r in references if not r)
        raise RungError(f"{data_path}: {missing} of {len(rows)} rows have no reference, and the {metric} reward "
                        "compares with one: add the answers (output, completion or a final assistant turn), or "
                        "choose a metric that checks alone (--metric json_schema, json_valid or regex)")
    return metric, reward_for(metric, settings.metric_options), reward_for(REPLAY_METRIC)


def run_step(step: dict, ctx) -> Any:
    """The `grpo` engine: the plan's base model (or an earlier step's model_dir: sft_then_grpo), data.train as the
    prompts, the plan's goal to pick the metric the gate will score with. With --gpus N it launches."""
    from rung.core.protocol import StepResult
    from rung.core.resolve import step_settings
    from rung.core.settings import GRPOSettings
    from rung.engines import training
    from rung.trainers import common
    from rung.trainers.grpo import grpo_job, train_grpo

    settings = step_settings(GRPOSettings, step, ctx)
    train_path = ctx.data_path("train")
    if train_path is None:
        raise RungError(f"step {step['id']}: the plan has no data.train (the prompts GRPO learns from)")
    eval_path = ctx.data_path("eval")
    schema = ctx.data_path("schema")
    if schema is not None and schema.is_file() and settings.metric in (None, "json_schema"):
        import json

        from rung.core.fileio import read_text

        settings.metric_options = {**(settings.metric_options or {}), "schema": json.loads(read_text(schema))}
    metric, score, replay_score = prepare(settings, train_path, eval_path, str(ctx.plan.get("goal") or ""))
    if training.launches(ctx):
        summary = training.launch_step("grpo", settings, ctx, job=grpo_job(settings, train_path, eval_path, metric),
                                       module=WORKER_MODULE)
    else:
        summary = train_grpo(settings, train_path, ctx.run_dir, score=score, metric=metric, eval_path=eval_path,
                             resume=ctx.resume, replay_score=replay_score)
    return StepResult(
        outputs=training.model_outputs(ctx, settings.adapter, metric=metric,
                                       reward_plot=str(Path(ctx.run_dir) / "reward.png")),
        metrics=training.step_metrics(summary, "first_reward", "final_reward", "global_step", "wall_s",
                                      "s_per_step", metric=metric),
        summary=training.elsewhere(summary) or (
            f"GRPO ({settings.adapter}) of {settings.model_name_or_path}, reward {metric}: mean reward "
            f"{common.fmt(summary.get('first_reward'))} -> {common.fmt(summary.get('final_reward'))} over "
            f"{summary.get('global_step')} steps. Reward curve: reward.png; samples before/after: samples.md."),
    )


def run_job(job: dict[str, Any], resume: bool) -> dict[str, Any]:
    """One process of a launched GRPO run: the job names the metric; its options are in the job's settings."""
    from rung.trainers.grpo import run_job as train_job

    options = (job.get("settings") or {}).get("metric_options")
    return train_job(job, resume, reward_for(job["metric"], options), reward_for(REPLAY_METRIC))


def main(argv: list[str] | None = None) -> int:
    """`python -m rung.engines.grpo --job RUN/grpo_job.json [--resume]` (what `accelerate launch` runs)."""
    from rung.trainers.worker import main as worker_main

    return worker_main(argv, prog=f"python -m {WORKER_MODULE}", only="grpo", entries={"grpo": run_job})


if __name__ == "__main__":
    sys.exit(main())
