"""SFT on a real model: `rung train sft` against a plain TRL script, same settings, SmolLM2-135M-Instruct.

Both train LoRA r16 / alpha 32 on every linear layer, lr 2e-4, batch 8, max_length 256, for the same number of
steps on examples/sql_assistant's chat rows, from the same safetensors folder (rung's one conversion of the
packaged GGUF). SmolLM2's template has no generation markers, so the plain script does what a TRL user would:
chat rows as conversational prompt/completion rows (loss on the answers), which is what rung does too.
Goal: rung's trainer.train() time <= 1.05x the plain script's (the same steps over the same rows).

Usage: OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_sft_real.py [--steps N] [--repeats N]
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
SHARED = dict(lr=2e-4, batch=8, r=16, alpha=32, dropout=0.05, seed=42, max_length=256)

PLAIN_TRL = r'''
import json, sys, time
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
model_dir, train_file, out, steps, shared = sys.argv[1:6]
s = json.loads(shared)
rows = [json.loads(l) for l in open(train_file) if l.strip()]
# no generation markers in the template: prompt (system + user) / completion (the assistant turn)
rows = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
cfg = SFTConfig(output_dir=out, learning_rate=s["lr"], per_device_train_batch_size=s["batch"], max_steps=int(steps),
                max_length=s["max_length"], seed=s["seed"], lr_scheduler_type="cosine", warmup_steps=0.03,
                logging_steps=5, save_strategy="no", activation_checkpointing=False, use_cpu=True, bf16=False,
                report_to="none", disable_tqdm=True)
peft = LoraConfig(r=s["r"], lora_alpha=s["alpha"], lora_dropout=s["dropout"], target_modules="all-linear",
                  task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok,
                     peft_config=peft)
t = time.perf_counter(); trainer.train(); train_s = time.perf_counter() - t
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
print("RESULT " + json.dumps({"train_s": train_s, "final_loss": losses[-1], "steps": trainer.state.global_step}))
'''


def run(cmd: list[str]) -> tuple[float, str]:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started, proc.stdout


def rung_run(out: Path, model_dir: str, steps: int) -> dict:
    wall, _ = run([sys.executable, "-c", "from rung.cli.main import main; main()", "train", "sft", "--base-model",
                   model_dir, "--data", str(TRAIN), "--out", str(out), "--max-steps", str(steps), "--eval-fraction",
                   "0", "--save-steps", "100000", "--logging-steps", "5", "--learning-rate", str(SHARED["lr"]),
                   "--batch-size", str(SHARED["batch"]), "--max-length", str(SHARED["max_length"])])
    m = json.loads((out / "metrics.json").read_text())
    return {"wall_s": wall, "train_s": m["wall_s"], "final_loss": m["final_loss"], "steps": m["global_step"]}


def trl_run(out: Path, model_dir: str, steps: int) -> dict:
    script = out.parent / "plain_trl_real.py"
    script.write_text(PLAIN_TRL)
    wall, stdout = run([sys.executable, str(script), model_dir, str(TRAIN), str(out), str(steps), json.dumps(SHARED)])
    r = json.loads(next(l for l in stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
    return {"wall_s": wall, "train_s": r["train_s"], "final_loss": r["final_loss"], "steps": r["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="Optimizer steps of each run (8 rows each).")
    parser.add_argument("--repeats", type=int, default=2, help="Alternating repeats of each side (median).")
    args = parser.parse_args()
    from rung.core.models import resolve_model

    model_dir = resolve_model("smollm2-135m-instruct")  # converted once from the packaged GGUF, then cached
    results: dict[str, list[dict]] = {"trl": [], "rung": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # alternate so drifting load on shared cores hits both sides alike
            results["trl"].append(trl_run(Path(tmp) / f"trl{i}", model_dir, args.steps))
            results["rung"].append(rung_run(Path(tmp) / f"rung{i}", model_dir, args.steps))
            print(f"repeat {i + 1}/{args.repeats}: " + json.dumps({k: v[-1] for k, v in results.items()}), flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print("\n| side | process wall s | trainer.train() s | final loss | steps |\n|---|---|---|---|---|")
    for name in results:
        print(f"| {name} | {med(name, 'wall_s'):.1f} | {med(name, 'train_s'):.1f} | {med(name, 'final_loss'):.4f} | "
              f"{med(name, 'steps'):.0f} |")
    print(f"\ntrain ratio rung/trl: {med('rung', 'train_s') / med('trl', 'train_s'):.3f}; "
          f"process wall ratio: {med('rung', 'wall_s') / med('trl', 'wall_s'):.3f}")


if __name__ == "__main__":
    main()
