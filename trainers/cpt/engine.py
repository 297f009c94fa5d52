"""Engine `cpt` for `rung run`: one process, or `accelerate launch` when the run asks for several."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.settings import CPTSettings
from rung.trainers.cpt.loop import report_markdown, train_cpt


def run_step(step: dict[str, Any], ctx: StepContext) -> StepResult:
    """Engine `cpt`: continue pretraining on the plan's corpus; outputs {"model_dir": ...}."""
    settings = step_settings(CPTSettings, step, ctx)
    corpus = ctx.data_paths("corpus")
    if not corpus:
        raise RungError("the cpt step needs data.corpus in plan.yaml (a folder or .txt/.md/.jsonl files)")
    nodes = int(ctx.nodes or 1)
    if (ctx.gpus and ctx.gpus > 1) or nodes > 1:
        from rung.trainers.cpt import launch

        launch.launch_cpt(settings, corpus, ctx.run_dir, gpus=max(1, ctx.gpus), nodes=nodes,
                          node_rank=int(ctx.node_rank or 0), main_address=ctx.main_address,
                          main_port=int(ctx.main_port or launch.DEFAULT_PORT),
                          resume=ctx.resume)
        result = json.loads((Path(ctx.run_dir) / "metrics.json").read_text())
    else:
        result = train_cpt(settings, corpus, ctx.run_dir, resume=ctx.resume,
                           show_config=False)  # `rung run` printed the resolved settings
        result.pop("blocks_seen", None)
    metrics = {k: result[k] for k in ("global_step", "first_loss", "last_loss", "train_seconds")}
    metrics.update({"tokens_per_second": result["throughput"].get("tokens_per_second"),
                    "mfu": result["throughput"].get("mfu")})
    if result["forgetting"]:
        first, last = result["forgetting"][0], result["forgetting"][-1]
        metrics.update({"domain_ppl_before": first["domain_ppl"], "domain_ppl_after": last["domain_ppl"],
                        "general_ppl_before": first["general_ppl"], "general_ppl_after": last["general_ppl"]})
    return StepResult(outputs={"model_dir": result["model_dir"], "report": str(Path(ctx.run_dir) / "report.md"),
                               "loss_plot": str(Path(ctx.run_dir) / "loss.png")},
                      metrics=metrics, summary=report_markdown(result))

