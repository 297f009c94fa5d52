"""The `cpt` engine for `rung run` (core/protocol.py): a step -> trainers/cpt train_cpt -> a StepResult.

Continued pretraining on the plan's data.corpus, in this process or, with `rung run --gpus N` (N > 1) or
--nodes, through the same `accelerate launch` as SFT and DPO (engines/training.py, trainers/launch.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.settings import CPTSettings
from rung.engines import training
from rung.trainers.cpt.corpus import MODEL_SUBDIR
from rung.trainers.cpt.loop import cpt_job, report_markdown, train_cpt


def run_step(step: dict[str, Any], ctx: StepContext) -> StepResult:
    """Engine `cpt`: continue pretraining on the plan's corpus; outputs {"model_dir": ...}."""
    settings = step_settings(CPTSettings, step, ctx)
    corpus = ctx.data_paths("corpus")
    if not corpus:
        raise RungError("the cpt step needs data.corpus in plan.yaml (a folder or .txt/.md/.jsonl files)")
    if training.launches(ctx):
        summary = training.launch_step("cpt", settings, ctx, job=cpt_job(settings, corpus))
    else:
        summary = train_cpt(settings, corpus, ctx.run_dir, resume=ctx.resume,
                            show_config=False)  # `rung run` printed the resolved settings
        summary.pop("blocks_seen", None)
    run_dir = Path(ctx.run_dir)
    return StepResult(outputs={"model_dir": summary.get("model_dir") or str(run_dir / MODEL_SUBDIR),
                               "report": str(run_dir / "report.md"), "loss_plot": str(run_dir / "loss.png")},
                      metrics=_metrics(summary),
                      summary=training.elsewhere(summary) or report_markdown(summary))


def _metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The shared keys (trainers/common.py SUMMARY_KEYS), with MFU and the forgetting monitor's perplexities."""
    ppl: dict[str, Any] = {}
    table = summary.get("forgetting") or []
    if table:
        first, last = table[0], table[-1]
        ppl = {"domain_ppl_before": first["domain_ppl"], "domain_ppl_after": last["domain_ppl"],
               "general_ppl_before": first["general_ppl"], "general_ppl_after": last["general_ppl"]}
    return training.step_metrics(summary, "global_step", "first_loss", "final_loss", "wall_s", "tokens_per_s",
                                 mfu=(summary.get("throughput") or {}).get("mfu"), **ppl)
