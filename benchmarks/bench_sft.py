"""SFT benchmark: `rung train sft` against plain TRL, side by side in one run, same tiny model and data.

1. Overhead: `rung train sft` vs a plain TRL SFTTrainer script with identical settings (LoRA r16 all-linear,
   lr, batch, 1 epoch, assistant-only loss, CPU fp32). Goal: wall ratio <= 1.05, same final loss.
2. Defaults: `rung train sft` with rung's defaults vs TRL's CLI defaults (`trl sft` = SFTConfig() defaults:
   full fine-tuning, gradient checkpointing on, batch 8, lr 2e-5), both 1 epoch. Goal: >= 1.5x tokens/s at equal
   eval loss. tokens/s counts real (non-pad) tokens of the training set per second of trainer.train().

Every run is a fresh subprocess (each pays its imports). builtin:tiny, examples/sql_assistant (240 train /
30 eval rows). Usage: OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_sft.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "sql_assistant" / "data" / "train.jsonl"
EVAL = ROOT / "examples" / "sql_assistant" / "data" / "eval.jsonl"
SHARED = dict(lr=2e-4, batch=4, epochs=1, r=16, alpha=32, dropout=0.05, seed=42)

# A plain TRL script: what a user would write without rung (the same settings rung resolves to).
PLAIN_TRL = r'''
import json, sys, time
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
mode, model_dir, train_file, eval_file, out, shared = sys.argv[1:7]
s = json.loads(shared)
rows = lambda p: [json.loads(l) for l in open(p) if l.strip()]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
if mode == "same":
    cfg = SFTConfig(output_dir=out, learning_rate=s["lr"], per_device_train_batch_size=s["batch"],
                    per_device_eval_batch_size=s["batch"],
                    num_train_epochs=s["epochs"], seed=s["seed"], lr_scheduler_type="cosine",
                    logging_steps=10, eval_strategy="steps", eval_steps=50, save_strategy="steps", save_steps=50,
                    save_total_limit=2, warmup_steps=0.03, assistant_only_loss=True, activation_checkpointing=False,
                    use_cpu=True, bf16=False, report_to="none", disable_tqdm=True)
    peft = LoraConfig(r=s["r"], lora_alpha=s["alpha"], lora_dropout=s["dropout"], target_modules="all-linear",
                      task_type="CAUSAL_LM")
else:  # `trl sft` CLI defaults: SFTConfig() as is (full fine-tuning, gradient checkpointing, batch 8, lr 2e-5);
       # on CPU bf16 must be off, and one epoch like rung's run
    cfg = SFTConfig(output_dir=out, num_train_epochs=s["epochs"], use_cpu=True, bf16=False, report_to="none",
                    disable_tqdm=True, eval_strategy="epoch")
    peft = None
trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows(train_file)),
                     eval_dataset=Dataset.from_list(rows(eval_file)), processing_class=tok, peft_config=peft)
tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
t = time.perf_counter(); trainer.train(); train_s = time.perf_counter() - t
trainer.save_model(out)
ev = trainer.evaluate()
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
print("RESULT " + json.dumps({"train_s": train_s, "final_loss": losses[-1], "eval_loss": ev["eval_loss"],
                              "tokens": tokens * s["epochs"], "steps": trainer.state.global_step}))
'''


def run(cmd: list[str]) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    run.last_stdout = proc.stdout
    return wall


def rung_run(out: Path, same: bool, extra: list[str] | None = None) -> dict:
    cmd = [sys.executable, "-c", "from rung.cli.main import main; main()", "train", "sft", "--data", str(TRAIN),
           "--eval", str(EVAL), "--out", str(out), "--epochs", "1", *(extra or [])]
    if same:
        cmd += ["--learning-rate", str(SHARED["lr"]), "--batch-size", str(SHARED["batch"])]
    wall = run(cmd)
    m = json.loads((out / "metrics.json").read_text())
    return {"wall_s": wall, "train_s": m["wall_s"], "final_loss": m["final_loss"], "eval_loss": m["final_eval_loss"],
            "tokens_per_s": m["train_tokens_per_epoch"] / m["wall_s"], "steps": m["global_step"],
            "timings": m["timings_s"]}


def trl_run(out: Path, mode: str, model_dir: str) -> dict:
    script = out.parent / "plain_trl.py"
    script.write_text(PLAIN_TRL)
    wall = run([sys.executable, str(script), mode, model_dir, str(TRAIN), str(EVAL), str(out), json.dumps(SHARED)])
    line = next(l for l in run.last_stdout.splitlines() if l.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    return {"wall_s": wall, "train_s": r["train_s"], "final_loss": r["final_loss"], "eval_loss": r["eval_loss"],
            "tokens_per_s": r["tokens"] / r["train_s"], "steps": r["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="Alternating repeats of each pair (median).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    from rung.core.models import builtin_tiny_path

    model_dir = str(builtin_tiny_path())
    results: dict[str, list[dict]] = {"rung_same": [], "trl_same": [], "rung_defaults": [], "trl_cli_defaults": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(args.repeats):  # alternate so drifting load on shared cores hits both sides alike
            results["trl_same"].append(trl_run(tmp / f"trl{i}", "same", model_dir))
            results["rung_same"].append(rung_run(tmp / f"rung{i}", same=True))
            results["rung_defaults"].append(rung_run(tmp / f"rungd{i}", same=False))
            results["trl_cli_defaults"].append(trl_run(tmp / f"trld{i}", "defaults", model_dir))
            print(f"repeat {i + 1}/{args.repeats} done", flush=True)
        # Equal eval loss: rung's defaults once more with an eval every 5 steps, to find the first step at which
        # its eval loss reaches what TRL's CLI defaults end the epoch with.
        curve_dir = tmp / "curve"
        rung_run(curve_dir, same=False, extra=["--eval-steps", "5"])
        curve = [(h["step"], h["eval_loss"]) for h in
                 json.loads((curve_dir / "metrics.json").read_text())["log_history"] if "eval_loss" in h]

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print("\n| run | wall s (process) | train s | final train loss | eval loss | tokens/s | steps |")
    print("|---|---|---|---|---|---|---|")
    for name in results:
        print(f"| {name} | {med(name, 'wall_s'):.1f} | {med(name, 'train_s'):.1f} | {med(name, 'final_loss'):.4f} | "
              f"{med(name, 'eval_loss'):.4f} | {med(name, 'tokens_per_s'):,.0f} | {med(name, 'steps'):.0f} |")
    phases = results["rung_same"][0]["timings"].keys()
    print("\nrung's phases (median seconds, rung_same): " + ", ".join(
        f"{p} {statistics.median(r['timings'][p] for r in results['rung_same']):.2f}" for p in phases))
    extras = statistics.median(sum(r["timings"][p] for p in ("samples_before", "samples_after", "plot"))
                               for r in results["rung_same"])
    summary = {
        "rung_extras_s": extras,
        "rung_extras_share_of_train": extras / med("rung_same", "train_s"),
        "wall_ratio_rung_vs_trl": med("rung_same", "wall_s") / med("trl_same", "wall_s"),
        "train_ratio_rung_vs_trl": med("rung_same", "train_s") / med("trl_same", "train_s"),
        "final_loss_diff": med("rung_same", "final_loss") - med("trl_same", "final_loss"),
        "tokens_per_s_ratio_defaults": med("rung_defaults", "tokens_per_s") / med("trl_cli_defaults", "tokens_per_s"),
        "eval_loss_rung_defaults": med("rung_defaults", "eval_loss"),
        "eval_loss_trl_cli_defaults": med("trl_cli_defaults", "eval_loss"),
    }
    target = med("trl_cli_defaults", "eval_loss")
    reached = next((step for step, loss in curve if loss <= target), None)
    if reached is not None:
        steps = med("rung_defaults", "steps")
        rung_to_target = med("rung_defaults", "train_s") * reached / steps  # at the un-instrumented run's pace
        summary["rung_step_reaching_trl_eval_loss"] = reached
        summary["time_to_equal_eval_loss_speedup"] = med("trl_cli_defaults", "train_s") / rung_to_target
    print("\nrung defaults eval-loss curve: " + ", ".join(f"{s}:{l:.3f}" for s, l in curve))
    print("\n" + "\n".join(f"{k}: {v:.4f}" for k, v in summary.items()))
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "summary": summary, "curve": curve}, indent=2))


if __name__ == "__main__":
    main()
