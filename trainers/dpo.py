"""Direct preference optimisation (DPO) with TRL's DPOTrainer, from a base model or an SFT output. Top to bottom.

    train_dpo(settings, data, out)         the pipeline; `rung train dpo` and the `dpo` engine (engines/dpo.py) call it
    build_dpo_config(settings, ...)        DPOSettings -> (DPOConfig, LoraConfig | None), the only translation
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from rung.trainers import common, data, jobs
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
    wrapped in DistributedDataParallel, and every DDP rank then trains on its own (measured with transformers 5.24 +
    accelerate 1.15: the two ranks' LoRA weights differed after one step; tests/trainers/test_launch_train.py checks
    that 2 processes train as 1 does; trainers/forgetting.py has the same note).
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


# check inputs -> load -> build the trainer -> train -> write outputs; each phase hands the next what it made.


@dataclass
class _Inputs:
    train_pairs: list[dict]
    eval_pairs: list[dict]
    checkpoint: str | None
    start_step: int
    starting_adapter: bool            # --base-model is an SFT adapter folder


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    ref_model: Any                    # None: the reference is the policy with its adapter disabled (or TRL's "ref")
    new_adapter: bool
    reference: str                    # what the reference model is, in words
    device: device_mod.Device
    sharded: bool                     # FSDP / ZeRO-3: this process holds a shard of the weights
    memory: dict[str, Any] | None


@dataclass
class _Built:
    trainer: Any
    counter: Any                      # common.step_counter
    probe: Any                        # the training pairs scored before and after (a Dataset)
    n_trainable: int


def train_dpo(settings: DPOSettings, data_path: str | Path, out_dir: str | Path, *,
              eval_path: str | Path | None = None, resume: bool = False,
              echo: Callable[[str], None] = click.echo, show_config: bool = True) -> common.Summary:
    """Preference-tune settings.model_name_or_path (a base model or an SFT output) on pairs into out_dir.
    Returns the summary (common.Summary: the shared keys, plus pairs_before/pairs_after and the eval rewards)."""
    out_dir, data_path = Path(out_dir), Path(data_path)
    process = common.this_process(echo)      # rank 0 of 1 unless `accelerate launch` started this process
    inputs = _check_inputs(settings, data_path, eval_path, out_dir, resume, process, show_config)
    loaded = _load(settings, inputs, process)
    sample_rows = (inputs.eval_pairs or inputs.train_pairs)[:SAMPLE_PROMPTS]   # answered before and after
    prompts, references = zip(*[common.prompt_of(r) for r in sample_rows]) if sample_rows else ((), ())
    samples = process.main and not loaded.sharded  # generation needs the whole model: the main process's copy
    before = _answers(loaded.model, loaded.tokenizer, prompts) if samples else None
    built = _build_trainer(settings, inputs, loaded, out_dir, process)
    before_probe = _probe_at_start(built.trainer, built.probe) if inputs.checkpoint is None else None
    wall = common.timed_train(built.trainer, inputs.checkpoint)
    pairs = (before_probe.scores if before_probe else None, _pair_scores(built.trainer, built.probe))
    if pairs[0]:
        process.echo(f"Training pairs ({len(built.probe)}): reward margin {pairs[0]['reward_margin']} -> "
                     f"{pairs[1]['reward_margin']}, chosen>rejected {pairs[0]['accuracy']:.0%} -> "
                     f"{pairs[1]['accuracy']:.0%}")
    return _write_outputs(settings, inputs, loaded, built, out_dir, data_path, process, wall=wall, pairs=pairs,
                          samples=(list(prompts), list(references), before))


def _answers(model, tokenizer, prompts) -> list[str]:
    from rung.trainers.generate import answers

    return answers(model, tokenizer, list(prompts), SAMPLE_NEW_TOKENS)


def _check_inputs(settings: DPOSettings, data_path: Path, eval_path: str | Path | None, out_dir: Path, resume: bool,
                  process: common.Process, show_config: bool) -> _Inputs:
    """Phase 1: checks that write nothing (existing checkpoints, QLoRA on CPU, every pair problem with its line),
    then the settings printed and saved before any model loads."""
    from rung.core.fileio import make_dir
    from rung.core.models import adapter_base, is_adapter_dir

    echo = process.echo
    starting_adapter = is_adapter_dir(settings.model_name_or_path)
    adapter_base_model = None
    if settings.adapter != "full":
        adapter_base_model = (adapter_base(Path(settings.model_name_or_path)) if starting_adapter
                              else settings.model_name_or_path)
    checkpoint, start_step = common.resume_point(out_dir, resume, echo)
    device_mod.check_qlora(settings)
    train_pairs, eval_pairs, split = data.load_train_eval(data_path, eval_path, "dpo", settings.eval_fraction,
                                                          settings.seed)
    config = common.resolved_config(settings, pipeline="dpo", data=str(data_path),
                                    eval_data=str(eval_path) if eval_path else None,
                                    adapter_base_model=adapter_base_model)
    make_dir(out_dir, what="output folder")
    if process.main:
        common.announce_config(config, out_dir, echo, show=show_config)
        common.write_heldout(out_dir, eval_pairs)
    echo(f"Data: {len(train_pairs)} train / {len(eval_pairs)} eval pairs from {data_path} ({split})")
    return _Inputs(train_pairs=train_pairs, eval_pairs=eval_pairs, checkpoint=checkpoint, start_step=start_step,
                   starting_adapter=starting_adapter)


def _load(settings: DPOSettings, inputs: _Inputs, process: common.Process) -> _Loaded:
    """Phase 2: policy, reference and tokenizer on the device, the end-of-turn token, token statistics and
    truncation, the memory check."""
    common.quiet_libraries()
    from rung.core.models import adapter_base, resolve_model
    from rung.trainers.jobs import weights_sharded

    echo = process.echo
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
    if isinstance(inputs.train_pairs[0]["prompt"], list):   # conversational pairs
        _end_turns_with_eos(model, tokenizer, echo)
    stats = data.token_stats(inputs.train_pairs, tokenizer, settings.max_length)
    echo(f"Tokens per pair (prompt + longer answer): min {stats['min']}, mean {stats['mean']}, "
         f"p95 {stats['p95']}, max {stats['max']}")
    note = data.truncation_note("dpo", len(stats["over_max_length"]), len(stats["prompt_fills_max_length"]),
                                settings.max_length or 0, False)
    if note:
        echo("Warning: " + note)
    base_path = resolve_model(adapter_base(Path(settings.model_name_or_path)) if inputs.starting_adapter
                              else settings.model_name_or_path)
    memory = None
    if process.world == 1:  # launched: the launcher sized the run per GPU for its strategy (trainers/launch.py)
        memory = device_mod.memory_check(base_path, settings, method="dpo", tokens=2 * stats["total_tokens"],
                                         seq_len=min(settings.max_length or stats["max"], stats["max"]),
                                         device=device, echo=echo)
    return _Loaded(model=model, tokenizer=tokenizer, ref_model=ref_model, new_adapter=new_adapter,
                   reference=reference, device=device, sharded=sharded, memory=memory)


def _end_turns_with_eos(model, tokenizer, echo) -> None:
    """DPO has no eos_token option: when the template ends assistant turns with another token, it becomes the
    tokenizer's EOS and joins the model's generation stop tokens."""
    token, note = common.end_of_turn_token(tokenizer)
    echo(f"Template: {note}")
    if token and token != tokenizer.eos_token:
        tokenizer.eos_token = token
        ids = model.generation_config.eos_token_id
        ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
        model.generation_config.eos_token_id = [tokenizer.eos_token_id, *ids]


def _build_trainer(settings: DPOSettings, inputs: _Inputs, loaded: _Loaded, out_dir: Path,
                   process: common.Process) -> _Built:
    """Phase 3: the DPOTrainer, its step counter, and the probe pairs scored before and after training.
    Each step sees batch x accumulation pairs, i.e. twice as many sequences (chosen + rejected)."""
    from datasets import Dataset
    from trl import DPOTrainer

    world = process.world
    dpo_config, lora = build_dpo_config(settings, common.checkpoint_dir(out_dir), loaded.device,
                                        has_eval=bool(inputs.eval_pairs), new_adapter=loaded.new_adapter)
    trainer = DPOTrainer(
        model=loaded.model, ref_model=loaded.ref_model, args=dpo_config,
        train_dataset=Dataset.from_list(inputs.train_pairs),
        eval_dataset=Dataset.from_list(inputs.eval_pairs) if inputs.eval_pairs else None,
        processing_class=loaded.tokenizer, peft_config=lora,
    )
    counter = common.count_steps(trainer, process.echo)
    n_trainable = common.parameter_counts(trainer.model)[0]
    process.echo(f"Training: DPO ({settings.adapter}, beta {settings.beta}, loss {settings.loss_type}), "
                 f"{n_trainable:,} parameters trainable; {len(trainer.train_dataset)} pairs"
                 # per device x accumulation x processes: 4 x 1 x 2 GPUs = 8 pairs per optimizer step
                 + (f", {settings.per_device_train_batch_size * settings.gradient_accumulation_steps * world} "
                    f"per step over {world} processes" if world > 1 else ""))
    return _Built(trainer=trainer, counter=counter, probe=Dataset.from_list(inputs.train_pairs[:PROBE_PAIRS]),
                  n_trainable=n_trainable)


def _save(trainer, tokenizer, out_dir: Path, process: common.Process, sharded: bool):
    """Only the trained adapter (not TRL's "ref" copy) and the tokenizer. Sharded weights (FSDP, ZeRO-3): every
    process takes part in the Trainer's save, which gathers them. Returns the unwrapped trained model."""
    import shutil

    from accelerate.utils import is_peft_model

    final = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(final) and not sharded:
        if process.main:
            final.save_pretrained(str(out_dir), selected_adapters=["default"])
    else:
        common.save_full_state(trainer)
        trainer.save_model(str(out_dir))
        if process.main:
            (out_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; resolved_config.yaml holds it
            shutil.rmtree(out_dir / "ref", ignore_errors=True)    # TRL's frozen copy of a starting adapter
    if process.main:
        tokenizer.save_pretrained(str(out_dir))
    return final


def _write_outputs(settings: DPOSettings, inputs: _Inputs, loaded: _Loaded, built: _Built, out_dir: Path,
                   data_path: Path, process: common.Process, *, wall: float, pairs: tuple[dict | None, dict],
                   samples: tuple[list, list, list[str] | None]) -> common.Summary:
    """Phase 5: the adapter or weights, tokenizer, samples, metrics, loss curve."""
    from accelerate.utils import is_peft_model

    trainer, echo = built.trainer, process.echo
    final = _save(trainer, loaded.tokenizer, out_dir, process, loaded.sharded)
    eval_metrics = common.final_eval(trainer, bool(inputs.eval_pairs))
    prompts, references, before = samples
    after = _answers(final, loaded.tokenizer, prompts) if before is not None else []
    common.samples_or_note(out_dir, process, prompts, references, before or [], after, "DPO",
                           samples=before is not None, note_title="DPO")
    summary = common.write_metrics(out_dir, trainer.state.log_history, {
        "pipeline": "dpo", "adapter": settings.adapter, "base_model": settings.model_name_or_path,
        "reference_model": loaded.reference, "global_step": trainer.state.global_step,
        "resumed_from_step": inputs.start_step, "steps_this_run": built.counter.steps, "wall_s": round(wall, 2),
        "tokens_per_s": None,                      # not counted for pairs
        "pairs_before": pairs[0], "pairs_after": pairs[1],
        "eval_reward_margin": eval_metrics.get("eval_rewards/margins"),
        "eval_accuracy": eval_metrics.get("eval_rewards/accuracies"),
        "trainable_params": built.n_trainable, "memory": loaded.memory, "processes": process.world,
    }, write=process.main)
    if process.main:
        common.plot_loss(out_dir, trainer.state.log_history, f"DPO ({settings.adapter}) on {data_path.name}")
    common.wait_for_everyone()  # the launcher returns once every file is written
    last = summary.get("final_loss")
    echo(f"Done in {wall:.1f} s: step {trainer.state.global_step}, final loss {last if last is None else round(last, 4)}"
         + (f", eval reward margin {eval_metrics.get('eval_rewards/margins', 0):.3f}, eval chosen>rejected "
            f"{eval_metrics.get('eval_rewards/accuracies', 0):.0%}" if inputs.eval_pairs else ""))
    echo(f"Outputs in {out_dir}: {'adapter (PEFT)' if is_peft_model(final) else 'model weights'}, tokenizer, "
         "resolved_config.yaml, metrics.json, loss.png, samples.md")
    return summary


# ---------------------------------------------------------------------------------------------- launched


def dpo_job(settings: DPOSettings, data_path: str | Path, eval_path: str | Path | None) -> dict[str, Any]:
    """The launched job's fields, every data problem reported before any process starts (trainers/jobs.py)."""
    return jobs.data_job("dpo", settings, data_path, eval_path)


def run_job(job: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """One process of a launched DPO run: `python -m rung.trainers.worker --job dpo_job.json`."""
    return jobs.run_data_job(train_dpo, DPOSettings, job, resume)
