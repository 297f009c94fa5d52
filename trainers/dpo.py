"""Direct preference optimisation (DPO) with TRL's DPOTrainer, from a base model or an SFT output. Top to bottom.

    train_dpo(settings, data, out)         the pipeline; `rung train dpo` and the `dpo` engine both call it
    build_dpo_config(settings, ...)        DPOSettings -> (DPOConfig, LoraConfig | None), the only translation
    run_step(step, ctx)                    the `dpo` engine for `rung run` (core/protocol.py)
    run_job(job)                           one process of `rung train dpo --gpus N` (trainers/worker.py)

On several GPUs or nodes the shared launcher (trainers/launch.py) starts train_dpo once per GPU through
`accelerate launch`, as for SFT: each process gets a slice of every global batch of pairs, the main process
prints and writes the files, and with sharded weights (FSDP, ZeRO-3) no samples are generated.

Where the policy starts and what the reference model is (DPO's loss compares the policy's log-probabilities
of chosen vs rejected with the reference's; beta scales how far the policy may move from it):

    starting point (--base-model)      --adapter lora/qlora                         --adapter full
    a base model or full-weight folder new LoRA; reference = the same weights with   reference = a frozen copy
                                       the adapter disabled (no second copy)         of the starting weights
    an SFT LoRA output folder          the SFT adapter keeps training; reference =   the SFT adapter is merged,
                                       a frozen copy of the SFT adapter (TRL's       then as above
                                       "ref" adapter): reference == SFT policy

So after `rung train sft`, `rung train dpo --base-model SFT_OUT` optimises the SFT policy against itself as the
reference, which is the setup of the DPO paper. The output adapter is relative to the original base model, so
`PeftModel.from_pretrained(base, OUT)`, `rung merge OUT` and `rung chat OUT` work as for SFT.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import click

from rung.core.errors import RungError
from rung.core.resolve import step_settings
from rung.trainers import common, data
from rung.trainers import device as device_mod
from rung.core.settings import DPOSettings

PROBE_PAIRS = 64            # training pairs scored before and after: reward margin and chosen>rejected accuracy
SAMPLE_PROMPTS = 3
SAMPLE_NEW_TOKENS = 64


# ---------------------------------------------------------------------------------------------- builder


def build_dpo_config(settings: DPOSettings, output_dir: Path, device: device_mod.Device, *, has_eval: bool,
                     new_adapter: bool):
    """DPOSettings -> (DPOConfig, LoraConfig or None). LoraConfig only when a fresh adapter is created."""
    from peft import LoraConfig
    from trl import DPOConfig

    values = common.trl_fields(settings, DPOConfig)
    values.update(
        output_dir=str(output_dir),
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,
        logging_first_step=True,
        ddp_find_unused_parameters=False,  # launched: every trainable weight is used in each forward pass
        **device_mod.device_args(settings, device),
    )
    if not has_eval:
        values["eval_strategy"] = "no"
    if not new_adapter:
        return DPOConfig(**values), None
    lora = LoraConfig(
        r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules, modules_to_save=settings.lora_modules_to_save,
        bias="none", task_type="CAUSAL_LM",
    )
    return DPOConfig(**values), lora


# ---------------------------------------------------------------------------------------------- pipeline


def _load_policy(settings: DPOSettings, device: device_mod.Device, echo):
    """(model, tokenizer, base spec for the adapter, ref_model, new_adapter, reference description)."""
    import torch

    from rung.core.models import adapter_base, is_adapter_dir
    from rung.core.models import load_model_and_tokenizer, load_tokenizer
    from rung.trainers.jobs import quant_storage_dtype

    spec = settings.model_name_or_path
    quantization = "4bit" if settings.adapter == "qlora" else None
    dtype = torch.bfloat16 if device.kind == "cuda" and device.bf16 and settings.bf16 is not False else None
    storage = quant_storage_dtype() if quantization else None  # bfloat16 when FSDP / ZeRO-3 shard the 4-bit base
    if is_adapter_dir(spec):
        from peft import PeftModel

        base = adapter_base(Path(spec))
        model, _ = load_model_and_tokenizer(base, trust_remote_code=settings.trust_remote_code,
                                            quantization=quantization, dtype=dtype, quant_storage=storage)
        tokenizer = load_tokenizer(spec, trust_remote_code=settings.trust_remote_code)
        if settings.adapter == "full":
            model = PeftModel.from_pretrained(model, spec).merge_and_unload()
            ref = copy.deepcopy(model).eval()
            for p in ref.parameters():
                p.requires_grad_(False)
            return (model, tokenizer, None, ref, False,
                    f"the SFT adapter {spec} merged into {base}; reference = a frozen copy of that merged model")
        model = PeftModel.from_pretrained(model, spec, is_trainable=True)
        return (model, tokenizer, base, None, False,
                f"policy = the SFT adapter {spec} (keeps training); reference = a frozen copy of it (TRL's 'ref' "
                "adapter), i.e. the SFT model")
    model, tokenizer = load_model_and_tokenizer(spec, trust_remote_code=settings.trust_remote_code,
                                                quantization=quantization, dtype=dtype, quant_storage=storage)
    if settings.adapter == "full":
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return model, tokenizer, None, ref, False, f"a frozen copy of {spec} (full-weight DPO: two copies in memory)"
    return (model, tokenizer, spec, None, True,
            f"{spec} with the new LoRA adapter disabled (no second copy in memory)")


def _pair_scores(trainer, dataset) -> dict[str, float]:
    metrics = trainer.evaluate(eval_dataset=dataset, metric_key_prefix="pairs")
    # DPOTrainer adds its reward metrics at log time with an "eval_" prefix whatever the metric_key_prefix
    def pick(name: str) -> float:
        return round(float(next((v for k, v in metrics.items() if k.endswith(name)), 0.0)), 4)

    return {"reward_margin": pick("rewards/margins"), "accuracy": pick("rewards/accuracies"),
            "loss": pick("_loss")}


def _probe_at_start(trainer, probe):
    """A TrainerCallback that scores the probe pairs when training starts (step 0), into its .scores.

    Not before trainer.train(): an evaluate() first leaves the model marked as prepared by accelerate but not
    wrapped in DistributedDataParallel, and every DDP rank then trains on its own (transformers 5.24 + accelerate
    1.15; measured: the two ranks' LoRA weights differed after one step; trainers/forgetting.py has the same note).
    In on_train_begin the Trainer has already wrapped the model."""
    from transformers import TrainerCallback

    class ProbeAtStart(TrainerCallback):
        scores: dict[str, float] | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                self.scores = _pair_scores(trainer, probe)

    callback = ProbeAtStart()
    trainer.add_callback(callback)
    return callback


def train_dpo(settings: DPOSettings, data_path: str | Path, out_dir: str | Path, *,
              eval_path: str | Path | None = None, resume: bool = False,
              echo: Callable[[str], None] = click.echo, show_config: bool = True) -> dict[str, Any]:
    """Preference-tune settings.model_name_or_path (a base model or an SFT output) on pairs into out_dir."""
    out_dir = Path(out_dir)
    data_path = Path(data_path)
    rank, world = common.process_place()      # (0, 1) unless `accelerate launch` started this process
    main = rank == 0
    echo = echo if main else common.silent

    # 1. Checks that write nothing: existing checkpoints, QLoRA on CPU, every pair problem with its line.
    from rung.core.fileio import make_dir
    from rung.core.models import adapter_base, is_adapter_dir

    starting_adapter = is_adapter_dir(settings.model_name_or_path)
    adapter_base_model = None
    if settings.adapter != "full":
        adapter_base_model = (adapter_base(Path(settings.model_name_or_path)) if starting_adapter
                              else settings.model_name_or_path)
    checkpoint, start_step = common.resume_point(out_dir, resume, echo)
    device_mod.check_qlora(settings)
    train_pairs, eval_pairs, split = data.load_train_eval(data_path, eval_path, "dpo", settings.eval_fraction,
                                                          settings.seed)

    # 2. Settings, printed and saved before any model loads.
    config = common.resolved_config(settings, pipeline="dpo", data=str(data_path),
                                    eval_data=str(eval_path) if eval_path else None,
                                    adapter_base_model=adapter_base_model)
    make_dir(out_dir, what="output folder")
    if main:
        common.announce_config(config, out_dir, echo, show=show_config)
        common.write_heldout(out_dir, eval_pairs)
    echo(f"Data: {len(train_pairs)} train / {len(eval_pairs)} eval pairs from {data_path} ({split})")

    # 3. Policy, reference, tokenizer.
    common.quiet_libraries()
    from datasets import Dataset
    from trl import DPOTrainer

    from rung.trainers.generate import answers
    from rung.trainers.jobs import weights_sharded
    from rung.core.models import resolve_model

    device = device_mod.detect_device()
    common.join_processes(device.kind)       # a launched run: this rank's GPU is torch's current device
    sharded = weights_sharded()              # FSDP / ZeRO-3: each process will hold a shard of the weights
    model, tokenizer, _, ref_model, new_adapter, reference = _load_policy(settings, device, echo)
    if not sharded:                          # FSDP / ZeRO-3 place the shards (TRL prepares the reference too)
        device_mod.place_on_device(model, device)
        if ref_model is not None:
            device_mod.place_on_device(ref_model, device)
    device_mod.warn_learning_rate(settings, echo, lora_floor=1e-5, suggested="5e-7")
    echo(f"Reference model: {reference}")
    conversational = isinstance(train_pairs[0]["prompt"], list)
    if conversational:
        token, note = common.end_of_turn_token(tokenizer)
        echo(f"Template: {note}")
        if token and token != tokenizer.eos_token:  # DPO has no eos_token option: set it on tokenizer and model
            tokenizer.eos_token = token
            ids = model.generation_config.eos_token_id
            ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
            model.generation_config.eos_token_id = [tokenizer.eos_token_id, *ids]

    # 4. Token statistics, truncation, memory.
    stats = data.token_stats(train_pairs, tokenizer, settings.max_length)
    echo(f"Tokens per pair (prompt + longer answer): min {stats['min']}, mean {stats['mean']}, "
         f"p95 {stats['p95']}, max {stats['max']}")
    note = data.truncation_note("dpo", len(stats["over_max_length"]), len(stats["prompt_fills_max_length"]),
                                settings.max_length or 0, False)
    if note:
        echo("Warning: " + note)
    base_path = resolve_model(adapter_base(Path(settings.model_name_or_path)) if starting_adapter
                              else settings.model_name_or_path)
    memory = None
    if world == 1:  # launched: the launcher sized the run per GPU for its strategy (trainers/launch.py)
        memory = device_mod.memory_check(base_path, settings, method="dpo", tokens=2 * stats["total_tokens"],
                                         seq_len=min(settings.max_length or stats["max"], stats["max"]),
                                         device=device, echo=echo)

    # 5. Samples before training.
    sample_rows = (eval_pairs or train_pairs)[:SAMPLE_PROMPTS]
    prompts, references = zip(*[common.prompt_of(r) for r in sample_rows]) if sample_rows else ((), ())
    samples = main and not sharded  # generation needs the whole model: the main process's copy
    before = answers(model, tokenizer, list(prompts), SAMPLE_NEW_TOKENS) if samples else []

    # 6. The trainer. Each step sees batch x accumulation pairs, i.e. twice as many sequences (chosen + rejected).
    dpo_config, lora = build_dpo_config(settings, common.checkpoint_dir(out_dir), device,
                                        has_eval=bool(eval_pairs), new_adapter=new_adapter)
    trainer = DPOTrainer(
        model=model, ref_model=ref_model, args=dpo_config, train_dataset=Dataset.from_list(train_pairs),
        eval_dataset=Dataset.from_list(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer, peft_config=lora,
    )
    common.use_rung_progress(trainer, echo)
    counter = common.step_counter()
    trainer.add_callback(counter)
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    echo(f"Training: DPO ({settings.adapter}, beta {settings.beta}, loss {settings.loss_type}), "
         f"{n_trainable:,} parameters trainable; {len(trainer.train_dataset)} pairs"
         # per device x accumulation x processes: 4 x 1 x 2 GPUs = 8 pairs per optimizer step
         + (f", {settings.per_device_train_batch_size * settings.gradient_accumulation_steps * world} per step "
            f"over {world} processes" if world > 1 else ""))
    probe = Dataset.from_list(train_pairs[:PROBE_PAIRS])
    before_probe = _probe_at_start(trainer, probe) if checkpoint is None else None
    started = time.perf_counter()
    common.run_trainer(trainer, checkpoint)
    wall = time.perf_counter() - started
    pairs_before = before_probe.scores if before_probe else None
    pairs_after = _pair_scores(trainer, probe)
    if pairs_before:
        echo(f"Training pairs ({len(probe)}): reward margin {pairs_before['reward_margin']} -> "
             f"{pairs_after['reward_margin']}, chosen>rejected {pairs_before['accuracy']:.0%} -> "
             f"{pairs_after['accuracy']:.0%}")

    # 7. Outputs: only the trained adapter (not TRL's "ref" copy), tokenizer, metrics, loss curve, samples.
    #    Sharded weights (FSDP, ZeRO-3): every process takes part in the Trainer's save, which gathers them.
    import shutil

    from accelerate.utils import is_peft_model

    final = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(final) and not sharded:
        if main:
            final.save_pretrained(str(out_dir), selected_adapters=["default"])
    else:
        common.save_full_state(trainer)
        trainer.save_model(str(out_dir))
        if main:
            (out_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; resolved_config.yaml holds it
            shutil.rmtree(out_dir / "ref", ignore_errors=True)    # TRL's frozen copy of a starting adapter
    if main:
        tokenizer.save_pretrained(str(out_dir))
    eval_metrics = common.final_eval(trainer, bool(eval_pairs))
    if samples:
        after = answers(final, tokenizer, list(prompts), SAMPLE_NEW_TOKENS)
        common.write_samples(out_dir, list(prompts), list(references), before, after, "DPO")
    elif main:
        common.skipped_samples_note(out_dir, "DPO", world)
    summary = common.write_metrics(out_dir, trainer.state.log_history, {
        "pipeline": "dpo", "adapter": settings.adapter, "start": settings.model_name_or_path,
        "reference_model": reference, "global_step": trainer.state.global_step,
        "resumed_from_step": start_step, "steps_this_run": counter.steps, "wall_s": round(wall, 2),
        "pairs_before": pairs_before, "pairs_after": pairs_after,
        "eval_loss": eval_metrics.get("eval_loss"),
        "eval_reward_margin": eval_metrics.get("eval_rewards/margins"),
        "eval_accuracy": eval_metrics.get("eval_rewards/accuracies"),
        "trainable_params": n_trainable, "memory": memory, "processes": world,
    }, write=main)
    if main:
        common.plot_loss(out_dir, trainer.state.log_history, f"DPO ({settings.adapter}) on {data_path.name}")
    common.wait_for_everyone()  # the launcher returns once every file is written
    last = summary.get("final_loss")
    echo(f"Done in {wall:.1f} s: step {trainer.state.global_step}, final loss {last if last is None else round(last, 4)}"
         + (f", eval reward margin {eval_metrics.get('eval_rewards/margins', 0):.3f}, eval chosen>rejected "
            f"{eval_metrics.get('eval_rewards/accuracies', 0):.0%}" if eval_pairs else ""))
    echo(f"Outputs in {out_dir}: {'adapter (PEFT)' if is_peft_model(final) else 'model weights'}, tokenizer, "
         "resolved_config.yaml, metrics.json, loss.png, samples.md")
    return summary


# ---------------------------------------------------------------------------------------------- engine


def run_step(step: dict, ctx) -> Any:
    """The `dpo` engine: starts from an earlier step's model_dir (sft_then_dpo) or the plan's base model;
    pairs from data.preferences. With `rung run --gpus N` (N > 1) or --nodes, the step runs through
    `accelerate launch` (trainers/launch.py)."""
    from rung.core.protocol import StepResult
    from rung.trainers import launch

    settings = step_settings(DPOSettings, step, ctx)
    pairs = ctx.data_path("preferences")
    if pairs is None:
        raise RungError(f"step {step['id']}: the plan has no data.preferences (prompt/chosen/rejected pairs)")
    if launch.step_launches(ctx):
        summary = launch.launch_step("dpo", settings, ctx, job=dpo_job(settings, pairs, None), echo=click.echo)
    else:
        summary = train_dpo(settings, pairs, ctx.run_dir, resume=ctx.resume,
                            show_config=False)  # `rung run` printed the resolved settings
    after = summary.get("pairs_after") or {}
    heldout = Path(ctx.run_dir) / common.HELDOUT
    return StepResult(
        outputs={"model_dir": str(ctx.run_dir), "adapter": settings.adapter != "full",
                 "samples": str(Path(ctx.run_dir) / "samples.md"), "loss_plot": str(Path(ctx.run_dir) / "loss.png"),
                 **({"heldout": str(heldout)} if heldout.exists() else {})},
        metrics={"final_loss": summary.get("final_loss"), "reward_margin": after.get("reward_margin"),
                 "accuracy": after.get("accuracy"), "eval_reward_margin": summary.get("eval_reward_margin"),
                 "global_step": summary.get("global_step"), "wall_s": summary.get("wall_s")},
        summary=(f"DPO ({settings.adapter}) from {settings.model_name_or_path}: reference = "
                 f"{summary.get('reference_model')}. Training pairs: reward margin "
                 f"{common.fmt((summary.get('pairs_before') or {}).get('reward_margin'))} -> "
                 f"{common.fmt(after.get('reward_margin'))}, chosen>rejected {common.fmt(after.get('accuracy'))}"
                 + (f"; {summary['processes']} processes" if (summary.get("processes") or 1) > 1 else "")
                 + ". Samples before/after: samples.md."),
    )


# ---------------------------------------------------------------------------------------------- launched


def dpo_job(settings: DPOSettings, data_path: str | Path, eval_path: str | Path | None) -> dict[str, Any]:
    """The job's DPO fields (trainers/jobs.py writes them beside the settings), after every pair problem has
    been reported here, once, before any process starts."""
    data.load_train_eval(Path(data_path), Path(eval_path) if eval_path else None, "dpo", settings.eval_fraction,
                         settings.seed)
    return {"data": str(Path(data_path).resolve()), "eval_data": str(Path(eval_path).resolve()) if eval_path else None}


def run_job(job: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """One process of a launched DPO run: `python -m rung.trainers.worker --job dpo_job.json`."""
    from rung.trainers.jobs import job_settings

    return train_dpo(job_settings(DPOSettings, job), job["data"], job["out_dir"], eval_path=job.get("eval_data"),
                     resume=bool(job.get("resume")) or resume)
