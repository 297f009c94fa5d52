"""CPU: rung's CPT step time against a plain transformers Trainer script with identical settings.

Both train builtin:tiny on examples/domain_corpus with the same TrainingArguments (fp32 on CPU, AdamW, cosine,
same batch, block size, learning rate and steps, no eval or checkpoint inside the timed window). The plain
script is what one would write from the transformers `run_clm.py` recipe: tokenize everything up front, pack
into blocks with `Dataset.map`, `default_data_collator`. rung streams and packs on the fly, and adds its
callbacks (data cursor, forgetting monitor, tokens/s). A step's time is the wall time between consecutive
`on_step_end` events (data loading + forward + backward + optimizer + callbacks), in CPU seconds of the
process (robust to other load on a shared machine) and in wall seconds; the first 5 steps are warm-up and
left out; medians over runs A/B/A/B... are reported.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cpt.py [--steps 60] [--repeats 3]

Goal: rung / plain <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
CORPUS = ROOT / "examples" / "domain_corpus" / "corpus"
WARMUP = 5


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """CPU seconds of this process between consecutive steps (what the step costs, robust to other load
        on a shared machine; with one torch thread CPU time ~ wall time on an idle one), and wall seconds."""

        def __init__(self):
            self.marks: list[tuple[float, float]] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append((time.process_time(), time.perf_counter()))

        def step_times(self) -> tuple[list[float], list[float]]:
            pairs = list(zip(self.marks[WARMUP:], self.marks[WARMUP + 1:]))
            return [b[0] - a[0] for a, b in pairs], [b[1] - a[1] for a, b in pairs]

    return StepTimer()


def settings(steps: int):
    from rung.core.models import builtin_tiny_path
    from rung.core.settings import CPTSettings

    return CPTSettings(model_name_or_path=str(builtin_tiny_path()), max_length=256, per_device_train_batch_size=8,
                       max_steps=steps, learning_rate=1e-3, warmup_ratio=0.05, eval_strategy="no",
                       save_strategy="no", logging_steps=10, max_eval_samples=4, seed=0)


def run_rung(steps: int, out: Path) -> list[float]:
    from rung.trainers.cpt import train_cpt

    timer = step_timer()
    train_cpt(settings(steps), [CORPUS], out, callbacks=[timer])
    return timer.step_times()


def run_plain(steps: int, out: Path) -> list[float]:
    """The plain script: run_clm-style tokenize + group_texts, then Trainer with identical arguments."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

    s = settings(steps)
    tokenizer = AutoTokenizer.from_pretrained(s.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(s.model_name_or_path, dtype=torch.float32)
    texts = []
    for path in sorted(CORPUS.iterdir()):
        if path.suffix == ".jsonl":
            texts += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
        else:
            texts.append(path.read_text())
    sep = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = Dataset.from_dict({"text": texts}).map(
        lambda batch: {"input_ids": [tokenizer(t, add_special_tokens=False)["input_ids"] + [sep]
                                     for t in batch["text"]]}, batched=True, remove_columns=["text"])

    def group(batch):
        flat = sum(batch["input_ids"], [])
        n = len(flat) // s.max_length * s.max_length
        blocks = [flat[i:i + s.max_length] for i in range(0, n, s.max_length)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    train = ids.map(group, batched=True, batch_size=len(ids))
    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=s.per_device_train_batch_size,
        learning_rate=s.learning_rate, lr_scheduler_type="cosine", warmup_steps=s.warmup_ratio,
        weight_decay=s.weight_decay, max_grad_norm=s.max_grad_norm, use_cpu=True, bf16=False, seed=s.seed,
        eval_strategy="no", save_strategy="no", logging_steps=s.logging_steps, report_to="none",
        dataloader_num_workers=0, disable_tqdm=True)
    timer = step_timer()
    Trainer(model=model, args=args, train_dataset=train, data_collator=default_data_collator,
            callbacks=[timer]).train()
    return timer.step_times()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args()
    import torch

    from rung.trainers.common import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cpu = {"rung": [], "plain": []}
    wall = {"rung": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, fn in (("plain", run_plain), ("rung", run_rung)):
                cpu_times, wall_times = fn(args.steps, Path(tmp) / f"{name}{repeat}")
                cpu[name].append(statistics.median(cpu_times))
                wall[name].append(statistics.median(wall_times))
                print(f"run {repeat + 1} {name}: median step {cpu[name][-1] * 1000:.1f} ms CPU, "
                      f"{wall[name][-1] * 1000:.1f} ms wall", flush=True)
    rung, plain = statistics.median(cpu["rung"]), statistics.median(cpu["plain"])
    rung_wall, plain_wall = statistics.median(wall["rung"]), statistics.median(wall["plain"])
    tokens = settings(args.steps).per_device_train_batch_size * 256
    result = {"steps": args.steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
              "tokens_per_step": tokens, "rung_step_cpu_ms": round(rung * 1000, 2),
              "plain_step_cpu_ms": round(plain * 1000, 2), "ratio": round(rung / plain, 3),
              "rung_step_wall_ms": round(rung_wall * 1000, 2), "plain_step_wall_ms": round(plain_wall * 1000, 2),
              "wall_ratio": round(rung_wall / plain_wall, 3), "load_average": os.getloadavg(),
              "runs_cpu": cpu, "runs_wall": wall}
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("runs")}, indent=2))
    print(f"rung / plain step time (CPU seconds): {result['ratio']:.3f} (goal <= 1.05); "
          f"wall clock: {result['wall_ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
