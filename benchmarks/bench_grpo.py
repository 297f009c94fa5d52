"""GRPO step time: `rung train grpo`'s pipeline against a plain TRL GRPOTrainer script with the same settings.

    python benchmarks/bench_grpo.py [--repeats 3] [--steps 10]          # builtin:tiny, interleaved, fresh processes
    python benchmarks/bench_grpo.py --real [--steps 3]                   # a few steps on SmolLM2-135M-Instruct

Each run is a fresh process (imports and caches never favour one side); rung and plain TRL alternate, so load on the
shared machine hits both alike. Both train LoRA r16 (all-linear) on the same 24 SQL prompts with the same reward
(rung's regex metric ^SELECT, called through the same function), 4 completions per prompt, 8 completions per step,
16 new tokens, the same seed; the figures are CPU seconds (one thread, so CPU time is robust to other jobs on the machine) and wall seconds
inside trainer.train() per optimizer step; what rung adds around the loop (data checks, samples, plots) is reported
apart: `prepare_s` and the total wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQL = ROOT / "examples" / "sql_assistant" / "data" / "train.jsonl"
PATTERN = "^SELECT"
SETTINGS = dict(num_generations=4, per_device_train_batch_size=8, max_completion_length=16, learning_rate=1e-4,
                logging_steps=1, save_steps=10_000, eval_fraction=0.0, seed=42)


def prompts_file(out: Path) -> Path:
    lines = SQL.read_text().splitlines()[:24]
    path = out / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_rung(out: Path, steps: int, model: str) -> dict:
    from rung.core.settings import GRPOSettings
    from rung.engines.grpo import reward_for
    from rung.trainers import common
    from rung.trainers.grpo import train_grpo

    cpu = {}
    run_trainer = common.run_trainer

    def timed(trainer, checkpoint):  # CPU seconds inside trainer.train(), through rung's own seam
        began = time.process_time()
        try:
            return run_trainer(trainer, checkpoint)
        finally:
            cpu["train"] = time.process_time() - began

    common.run_trainer = timed

    settings = GRPOSettings(model_name_or_path=model, max_steps=steps, metric="regex",
                            metric_options={"pattern": PATTERN}, **SETTINGS)
    started = time.perf_counter()
    summary = train_grpo(settings, prompts_file(out), out / "rung", score=reward_for("regex", {"pattern": PATTERN}),
                         metric="regex", echo=lambda line: None)
    return {"side": "rung", "s_per_step": summary["wall_s"] / steps, "cpu_s_per_step": cpu["train"] / steps,
            "total_s": time.perf_counter() - started,
            "prepare_s": summary["timings_s"]["prepare"], "rewards": [round(h["reward"], 3) for h in
                                                                      summary["log_history"] if "reward" in h]}


def run_plain(out: Path, steps: int, model: str) -> dict:
    """What a TRL user writes: load, LoraConfig, GRPOConfig, GRPOTrainer(reward_funcs=...), train()."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rung.core.models import resolve_model
    from rung.engines.grpo import reward_for
    from rung.trainers.data import load_examples

    started = time.perf_counter()
    path = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(path)
    rows = load_examples(prompts_file(out), "grpo")
    score = reward_for("regex", {"pattern": PATTERN})

    def reward(prompts, completions, **kwargs):
        return score(["".join(m["content"] for m in c) for c in completions], [""] * len(completions))

    config = GRPOConfig(output_dir=str(out / "plain"), max_steps=steps, use_cpu=True, bf16=False, report_to="none",
                        disable_tqdm=True, warmup_steps=0.03, lr_scheduler_type="cosine", save_strategy="no",
                        gradient_checkpointing=False,  # rung's default; TRL's is True (slower, less memory)
                        **{k: v for k, v in SETTINGS.items() if k not in ("save_steps", "eval_fraction")})
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer,
                          peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    ready, began = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - ready, time.process_time() - began
    return {"side": "plain TRL", "s_per_step": wall / steps, "cpu_s_per_step": cpu / steps,
            "total_s": time.perf_counter() - started,
            "prepare_s": ready - started, "rewards": [round(h["reward"], 3) for h in trainer.state.log_history
                                                      if "reward" in h]}


def child(side: str, out: str, steps: int, model: str) -> None:
    import torch

    torch.set_num_threads(1)
    result = (run_rung if side == "rung" else run_plain)(Path(out), steps, model)
    print("RESULT " + json.dumps(result))


def fresh(side: str, out: Path, steps: int, model: str) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    done = subprocess.run([sys.executable, __file__, "--child", side, "--out", str(out), "--steps", str(steps),
                           "--model", model], capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--real", action="store_true", help="a few rung GRPO steps on SmolLM2-135M-Instruct")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_grpo"))
    parser.add_argument("--child", choices=("rung", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, str(args.out), args.steps, args.model)
        return
    if args.real:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_replay import smollm2_folder

        result = fresh("rung", args.out / "real", args.steps, str(smollm2_folder()))
        print(json.dumps(result))
        return
    results: dict[str, list[dict]] = {"rung": [], "plain": []}
    for repeat in range(args.repeats):
        for side in ("rung", "plain") if repeat % 2 == 0 else ("plain", "rung"):
            results[side].append(fresh(side, args.out / f"{side}-{repeat}", args.steps, args.model))
            print(side, json.dumps(results[side][-1]), flush=True)
    for key, what in (("cpu_s_per_step", "CPU s/step"), ("s_per_step", "wall s/step")):
        rung_s = statistics.median(r[key] for r in results["rung"])
        plain_s = statistics.median(r[key] for r in results["plain"])
        print(f"median {what} over {args.repeats} interleaved runs of {args.steps} steps: rung {rung_s:.3f}, "
              f"plain TRL {plain_s:.3f}, ratio {rung_s / plain_s:.3f}")
    print(f"median total wall (load + train + outputs): rung "
          f"{statistics.median(r['total_s'] for r in results['rung']):.1f} s, plain TRL "
          f"{statistics.median(r['total_s'] for r in results['plain']):.1f} s")


if __name__ == "__main__":
    main()
