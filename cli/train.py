"""`rung train`: the trainers' group (trainers/cli.py: sft, dpo, cpt) plus `rung train grpo`, which lives here because
its reward is a metric of engines/metrics.py, a layer above the trainers (pyproject.toml's import-linter layers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rung.core.settings import GRPOSettings
from rung.trainers.cli import (_training_options, check_training, cluster_options, cluster_problems, launches,
                               output_guard, pop_cluster, require_gpus, train)


@train.command("grpo")
@_training_options(GRPOSettings)
@cluster_options
def grpo(data_file: Path, out_dir: Path, eval_file: Path | None, resume: bool, overwrite: bool,
         config_file: Path | None, set_pairs: tuple[str, ...], **flags: Any) -> None:
    """Reinforce answers your checker scores well (GRPO), with a metric as the reward.

    --data holds prompts (chat rows, prompt/completion, input/output, or a prompt alone for a checker that needs no
    reference); --metric names the reward (engines/metrics.py: exact_match, json_schema, regex, ...; default: chosen
    from the rows as `rung gate` chooses it). With --gpus N the run starts through `accelerate launch`."""
    from rung.engines import grpo as engine

    cluster = pop_cluster(flags)
    settings = check_training(GRPOSettings, "grpo", config_file=config_file, set_pairs=set_pairs, flags=flags,
                              out_dir=out_dir, resume=resume, overwrite=overwrite,
                              files={"--data": data_file, "--eval": eval_file}, more=cluster_problems(cluster))
    metric, score, replay_score = engine.prepare(settings, data_file, eval_file, goal="")
    from rung.trainers.grpo import grpo_job, train_grpo

    with output_guard(out_dir, cluster):
        if launches(cluster):
            from rung.trainers.launch import launch

            require_gpus(cluster)
            launch("grpo", settings, out_dir, job=grpo_job(settings, data_file, eval_file, metric),
                   gpus=cluster["gpus"], nodes=cluster["nodes"], node_rank=cluster["node_rank"],
                   main_address=cluster["main_address"], main_port=cluster["main_port"], strategy=cluster["strategy"],
                   cpu=cluster["cpu"], resume=resume, dry_run=cluster["dry_run"], echo=click.echo,
                   module=engine.WORKER_MODULE)
        else:
            train_grpo(settings, data_file, out_dir, score=score, metric=metric, eval_path=eval_file, resume=resume,
                       replay_score=replay_score)


__all__ = ["grpo", "train"]
