"""What the four trainer engines (engines/sft.py, dpo.py, cpt.py, grpo.py) share between a `rung run` step and
the training library below (trainers/): whether the step launches, the launch itself, and the step's outputs.

    launches(ctx)                             --gpus above 1, or several nodes: the step runs through accelerate
    launch_step(pipeline, settings, ctx, job) trainers/launch.py's launch with the step's cluster flags; returns
                                              rank 0's metrics.json, or {"node_rank": R} on a node that has none
    model_outputs(ctx, adapter)               the outputs every SFT/DPO/GRPO step reports (model_dir, samples, ...)
    step_metrics(summary, *first, **values)   the summary's shared keys (trainers/common.py SUMMARY_KEYS) as the
                                              step's metrics, after the engine's own

trainers/ knows nothing of steps: it takes plain values (paths, counts, addresses), this module reads them off
the StepContext (core/protocol.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rung.core.protocol import StepContext
from rung.trainers import launch
from rung.trainers.common import HELDOUT, SUMMARY_KEYS


def launches(ctx: StepContext) -> bool:
    """Whether a `rung run` step runs through `accelerate launch`: --gpus above 1, or several nodes."""
    return (ctx.gpus or 0) > 1 or int(ctx.nodes or 1) > 1


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


def launch_step(pipeline: str, settings: Any, ctx: StepContext, *, job: dict[str, Any],
                module: str = launch.WORKER_MODULE) -> dict[str, Any]:
    """A launched step: the shared launcher with the step's --gpus/--nodes/--node-rank/--main-address/--main-port.
    With --cpu, or on a machine without CUDA, the processes run on CPU (gloo), as `rung train --cpu` does. Returns
    the main process's metrics.json, or {"node_rank": R} on a node other than rank 0's (that node writes metrics.json)."""
    out_dir = Path(ctx.run_dir)
    node_rank = int(ctx.node_rank or 0)
    launch.launch(pipeline, settings, out_dir, job=job, gpus=max(1, int(ctx.gpus or 1)), nodes=int(ctx.nodes or 1),
                  node_rank=node_rank, main_address=ctx.main_address,
                  main_port=int(ctx.main_port if ctx.main_port is not None else launch.DEFAULT_PORT),
                  cpu=ctx.cpu or _no_cuda(), resume=ctx.resume, echo=click.echo, module=module)
    metrics = out_dir / "metrics.json"
    if not metrics.is_file():  # another node's run folder: the node with rank 0 writes metrics.json
        return {"node_rank": node_rank}
    return json.loads(metrics.read_text())


def model_outputs(ctx: StepContext, adapter: str, **more: Any) -> dict[str, Any]:
    """A trainer step's outputs: the folder later steps load (model_dir), whether it is an adapter, samples.md,
    the loss curve, and the held-out rows the gate scores when the run held some out."""
    run_dir = Path(ctx.run_dir)
    return {"model_dir": str(run_dir), "adapter": adapter != "full", **more,
            "samples": str(run_dir / "samples.md"), "loss_plot": str(run_dir / "loss.png"),
            **({"heldout": str(run_dir / HELDOUT)} if (run_dir / HELDOUT).exists() else {})}


def step_metrics(summary: dict[str, Any], *first: str, **values: Any) -> dict[str, Any]:
    """A trainer step's metrics: the summary keys named in `first`, then `values`, then the rest of SUMMARY_KEYS
    (report.md's step table heads with the first three numbers)."""
    metrics = {key: summary.get(key) for key in first}
    metrics.update(values)
    metrics.update({key: summary.get(key) for key in SUMMARY_KEYS if key not in metrics})
    return metrics


def elsewhere(summary: dict[str, Any]) -> str | None:
    """The summary line of a node other than rank 0's, which trained its share but writes no metrics."""
    if "node_rank" in summary and "global_step" not in summary:
        return (f"node {summary['node_rank']}: trained its processes' share; the node with rank 0 writes the "
                "model, metrics.json and the report")
    return None
