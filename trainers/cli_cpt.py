"""`rung train cpt`: continued pretraining on a domain corpus, on this process or through `accelerate launch`.

Only click and pure-Python rung modules load here; torch and transformers load when training starts.
Settings precedence: dataclass default < --config FILE < flags < --set key=value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rung.core.errors import RungError
from rung.core.options import Checked, settings_options
from rung.core.settings import CPTSettings
from rung.trainers.cli import check_training


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
@click.option("--gpus", type=Checked(int, minimum=1), default=1, show_default=True,
              help="Processes (GPUs) per node; more than 1 starts the run through `accelerate launch`.")
@click.option("--nodes", type=Checked(int, minimum=1), default=1, show_default=True,
              help="Machines taking part (num_machines).")
@click.option("--node-rank", type=Checked(int, minimum=0), default=0, show_default=True,
              help="This machine's rank, 0..nodes-1 (run the same command on every node, changing only this).")
@click.option("--main-address", default=None, help="Address of the rank-0 node (several nodes).")
@click.option("--main-port", type=Checked(int, minimum=0, maximum=65535), default=29500, show_default=True,
              help="Port on the rank-0 node for the process group (0: pick a free one, single node only).")
@click.option("--strategy", type=click.Choice(["ddp", "fsdp", "zero2", "zero3"]), default=None,
              help="Distributed strategy; default: chosen from the estimator's memory figure.")
@click.option("--cpu", is_flag=True, help="Run the --gpus N processes on CPU (gloo): tests the distributed path "
                                          "without GPUs.")
@click.option("--dry-run", is_flag=True, help="Write the accelerate config and job file, print the exact command; "
                                              "train nothing.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out: same step, same data position.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out that rung did not create (files of "
                                                "the same name are replaced).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML of settings, or a plan.yaml (its cpt step's settings); flags win.")
@click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE",
              help="Any CPTSettings field (transformers/TRL names), e.g. --set warmup_ratio=0.05; repeatable; wins.")
def cpt(corpus: tuple[Path, ...], out_dir: Path, trainable_embeddings: bool | None, general_text: Path | None,
        gpus: int, nodes: int, node_rank: int, main_address: str | None, main_port: int, strategy: str | None,
        cpu: bool, dry_run: bool, resume: bool, overwrite: bool, config_file: Path | None,
        set_pairs: tuple[str, ...], **flags: Any) -> None:
    """Continue pretraining a base model on a domain corpus, watching general-text perplexity for forgetting."""
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
                              files={"--general-text": general_text}, more=corpus_problems)
    if trainable_embeddings and settings.adapter == "full":
        raise RungError("--trainable-embeddings goes with --adapter lora (full training trains them anyway)")
    import contextlib

    from rung.core.inputs import fresh_output

    # several nodes share --out: one failing node must not remove what the others write
    with fresh_output(out_dir) if nodes == 1 else contextlib.nullcontext():
        train_or_launch(settings, corpus, out_dir, general_text=general_text, gpus=gpus, nodes=nodes,
                        node_rank=node_rank, main_address=main_address, main_port=main_port, strategy=strategy,
                        cpu=cpu, dry_run=dry_run, resume=resume)


def train_or_launch(settings: CPTSettings, corpus: tuple[Path, ...], out_dir: Path, *, general_text: Path | None,
                    gpus: int, nodes: int, node_rank: int, main_address: str | None, main_port: int,
                    strategy: str | None, cpu: bool, dry_run: bool, resume: bool) -> None:
    """Train in this process, or write the launch files and start `accelerate launch` (or print it: --dry-run)."""
    if gpus > 1 or nodes > 1 or dry_run:
        if not dry_run and not cpu:
            import torch

            if not torch.cuda.is_available():
                raise RungError(f"--gpus {gpus}: this machine has no CUDA GPU; add --cpu to run {gpus} CPU "
                                "processes (gloo) instead")
        from rung.trainers.cpt.launch import launch_cpt

        launch_cpt(settings, list(corpus), out_dir, gpus=gpus, nodes=nodes, node_rank=node_rank,
                   main_address=main_address, main_port=main_port, strategy=strategy, cpu=cpu, resume=resume,
                   dry_run=dry_run, general_text=str(general_text) if general_text else None, echo=click.echo)
        if dry_run:
            return
        metrics_path = out_dir / "metrics.json"
        if node_rank != 0 or not metrics_path.exists():
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
