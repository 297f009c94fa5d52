"""`rung train cpt`: continued pretraining on a domain corpus, on this process or through `accelerate launch`
(the cluster flags and the launcher are the ones sft and dpo use: cli/train.py cluster_options, trainers/launch.py).

Only click and pure-Python rung modules load here; torch and transformers load when training starts.
Settings precedence: dataclass default < --config FILE < flags < --set key=value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rung.core.errors import RungError
from rung.cli.options import settings_options
from rung.core.settings import CPTSettings
from rung.cli.train import (check_training, cluster_options, cluster_problems, launches, output_guard,
                               pop_cluster, require_gpus)


@click.command("cpt")
@click.option("--corpus", "corpus", multiple=True, type=click.Path(path_type=Path), required=True,
              help="Domain text: a folder or .txt/.md/.jsonl files (a \"text\" field per line); repeatable.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Run folder: model/, checkpoints/, metrics.json, report.md, loss.png, accelerate_config.yaml.")
@settings_options(CPTSettings)
@click.option("--trainable-embeddings", is_flag=True, default=None,
              help="With LoRA, also train the embeddings and LM head (lora_modules_to_save) for new vocabulary.")
@click.option("--general-text", type=click.Path(path_type=Path), default=None,
              help="A .txt file of general text for the forgetting monitor (default: held-out Python help topics).")
@cluster_options
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out: same step, same data position.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out that rung did not create (files of "
                                                "the same name are replaced).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML of settings, or a plan.yaml (its cpt step's settings); flags win.")
@click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE",
              help="Any CPTSettings field (transformers/TRL names), e.g. --set warmup_ratio=0.05; repeatable; wins.")
def cpt(corpus: tuple[Path, ...], out_dir: Path, trainable_embeddings: bool | None, general_text: Path | None,
        resume: bool, overwrite: bool, config_file: Path | None, set_pairs: tuple[str, ...], **flags: Any) -> None:
    """Continue pretraining a base model on a domain corpus, watching general-text perplexity for forgetting."""
    cluster = pop_cluster(flags)
    if trainable_embeddings:
        flags["lora_modules_to_save"] = ["embed_tokens", "lm_head"]
    from rung.trainers.cpt import corpus_files

    try:
        corpus_files(corpus)  # every corpus problem now, before any launch
        corpus_problems: tuple[str, ...] = ()
    except RungError as error:
        corpus_problems = tuple(error.message.splitlines())
    settings = check_training(CPTSettings, "cpt", config_file=config_file, set_pairs=set_pairs, flags=flags,
                              out_dir=out_dir, resume=resume, overwrite=overwrite,
                              files={"--general-text": general_text}, more=corpus_problems + cluster_problems(cluster))
    from rung.trainers.replay import replay_problems

    if replay_problems(settings.replay, settings.replay_ratio):  # before the first write
        raise RungError(replay_problems(settings.replay, settings.replay_ratio))
    if trainable_embeddings and settings.adapter == "full":
        raise RungError("--trainable-embeddings goes with --adapter lora (full training trains them anyway)")
    with output_guard(out_dir, cluster):
        train_or_launch(settings, corpus, out_dir, general_text=general_text, cluster=cluster, resume=resume)


def train_or_launch(settings: CPTSettings, corpus: tuple[Path, ...], out_dir: Path, *, general_text: Path | None,
                    cluster: dict[str, Any], resume: bool) -> None:
    """Train in this process, or write the launch files and start `accelerate launch` (or print it: --dry-run)."""
    if launches(cluster):
        require_gpus(cluster)
        from rung.trainers.cpt import cpt_job
        from rung.trainers.launch import launch

        launch("cpt", settings, out_dir, job=cpt_job(settings, list(corpus), general_text), gpus=cluster["gpus"],
               nodes=cluster["nodes"], node_rank=cluster["node_rank"], main_address=cluster["main_address"],
               main_port=cluster["main_port"], strategy=cluster["strategy"], cpu=cluster["cpu"], resume=resume,
               dry_run=cluster["dry_run"], echo=click.echo)
        if cluster["dry_run"]:
            return
        metrics_path = out_dir / "metrics.json"
        if cluster["node_rank"] != 0 or not metrics_path.exists():
            return
        result = json.loads(metrics_path.read_text())
    else:
        from rung.trainers.cpt import train_cpt

        result = train_cpt(settings, list(corpus), out_dir, resume=resume, general_text=general_text)
    table = result.get("forgetting") or []
    click.echo(f"Model: {result['model_dir']}")
    if table:
        first, last = table[0], table[-1]
        click.echo(f"Domain perplexity {first.get('domain_ppl', float('nan')):.2f} -> "
                   f"{last.get('domain_ppl', float('nan')):.2f}; general perplexity "
                   f"{first.get('general_ppl', float('nan')):.2f} -> {last.get('general_ppl', float('nan')):.2f}")
    click.echo(f"Report: {out_dir / 'report.md'}")
