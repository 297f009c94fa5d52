"""The `dpo` engine for `rung run` (core/protocol.py): a step -> trainers/dpo.py train_dpo -> a StepResult.

Starts from an earlier step's model_dir (sft_then_dpo) or the plan's base model; pairs from data.preferences.
With `rung run --gpus N` (N > 1) or --nodes, the step runs through `accelerate launch` (engines/training.py).
"""

from __future__ import annotations

from rung.core.errors import RungError
from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.settings import DPOSettings
from rung.engines import training
from rung.trainers import common
from rung.trainers.dpo import dpo_job, train_dpo


def run_step(step: dict, ctx: StepContext) -> StepResult:
    """Engine `dpo`: preference tuning on the plan's data.preferences; outputs {"model_dir": ...}."""
    settings = step_settings(DPOSettings, step, ctx)
    pairs = ctx.data_path("preferences")
    if pairs is None:
        raise RungError(f"step {step['id']}: the plan has no data.preferences (prompt/chosen/rejected pairs)")
    if training.launches(ctx):
        summary = training.launch_step("dpo", settings, ctx, job=dpo_job(settings, pairs, None))
    else:
        summary = train_dpo(settings, pairs, ctx.run_dir, resume=ctx.resume,
                            show_config=False)  # `rung run` printed the resolved settings
    after = summary.get("pairs_after") or {}  # the training pairs scored after training
    return StepResult(
        outputs=training.model_outputs(ctx, settings.adapter),
        metrics=training.step_metrics(summary, "final_loss", reward_margin=after.get("reward_margin"),
                                      accuracy=after.get("accuracy"),
                                      eval_reward_margin=summary.get("eval_reward_margin")),
        summary=training.elsewhere(summary) or (
            f"DPO ({settings.adapter}) from {settings.model_name_or_path}: reference = "
            f"{summary.get('reference_model')}. Training pairs: reward margin "
            f"{common.fmt((summary.get('pairs_before') or {}).get('reward_margin'))} -> "
            f"{common.fmt(after.get('reward_margin'))}, chosen>rejected {common.fmt(after.get('accuracy'))}"
            + (f"; {summary['processes']} processes" if (summary.get("processes") or 1) > 1 else "")
            + ". Samples before/after: samples.md."),
    )
