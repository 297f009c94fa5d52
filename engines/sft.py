"""The `sft` engine for `rung run` (core/protocol.py): a step -> trainers/sft.py train_sft -> a StepResult.

Base model from the plan (or an earlier step's model_dir), data.train / data.eval. With `rung run --gpus N`
(N > 1) or --nodes, the step runs through `accelerate launch` (engines/training.py, trainers/launch.py).
"""

from __future__ import annotations

from rung.core.errors import RungError
from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.settings import SFTSettings
from rung.engines import training
from rung.trainers import common
from rung.trainers.sft import sft_job, train_sft


def run_step(step: dict, ctx: StepContext) -> StepResult:
    """Engine `sft`: supervised fine-tuning on the plan's data.train; outputs {"model_dir": ...}."""
    settings = step_settings(SFTSettings, step, ctx)
    train_path = ctx.data_path("train")
    if train_path is None:
        raise RungError(f"step {step['id']}: the plan has no data.train (SFT examples)")
    eval_path = ctx.data_path("eval")
    if training.launches(ctx):
        summary = training.launch_step("sft", settings, ctx, job=sft_job(settings, train_path, eval_path))
    else:
        summary = train_sft(settings, train_path, ctx.run_dir, eval_path=eval_path, resume=ctx.resume,
                            show_config=False)  # `rung run` printed the resolved settings
    return StepResult(
        outputs=training.model_outputs(ctx, settings.adapter),
        metrics=training.step_metrics(summary),
        summary=training.elsewhere(summary) or (
            f"SFT ({settings.adapter}) of {settings.model_name_or_path}: "
            f"loss {common.fmt(summary.get('first_loss'))} -> {common.fmt(summary.get('final_loss'))}, "
            f"eval loss {common.fmt(summary.get('final_eval_loss'))}, {summary.get('global_step')} steps"
            + (f" on {summary['processes']} processes" if (summary.get("processes") or 1) > 1 else "")
            + ". Samples before/after: samples.md."),
    )
