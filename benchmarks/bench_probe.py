"""Probe throughput through an OpenAI-compatible endpoint, against the bare `openai` client; gate cost per 100 rows.

One real `transformers serve` (builtin:tiny's folder, 127.0.0.1) answers everything. Side by side, interleaved
(bare, rung, bare, rung, ...) so machine load hits both alike, at concurrency 1 and 4:
    bare   the official openai client: the same chat requests, a thread pool of that size
    rung   core/endpoint.EndpointChat (what probe and gate use): same requests, same concurrency
    probe  `rung probe` (zero-shot) while it answers: the same client plus the answer cache on disk
    probe-end-to-end  the whole command: also reading rows, scoring, evidence.yaml, probe.md and the plot
The issue's bar: rung's overhead <= 5% against the bare client. Then `rung gate` over the endpoint and in
process: seconds (and requests) per 100 rows.

    python benchmarks/bench_probe.py [--rows 40] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "examples" / "sql_assistant" / "data" / "eval.jsonl"
MAX_TOKENS = 16


def start_server(model_dir: str, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
               "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2):
                return process, base
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit(f"transformers serve did not come up:\n{log.read_text()[-2000:]}")


def conversations(n: int) -> list[list[dict[str, str]]]:
    """The very requests `rung probe` makes for its zero-shot rung on these rows (system prompt + question)."""
    from rung.core.rows import load_task_rows
    from rung.engines.probe import prompted

    rows = load_task_rows(EVAL, "eval")
    return prompted("schema", [], 0, [rows[i % len(rows)] for i in range(n)])


def bare(base: str, model: str, convs, concurrency: int) -> float:
    from openai import OpenAI

    client = OpenAI(base_url=base, api_key="EMPTY")

    def one(conv):
        reply = client.chat.completions.create(model=model, messages=conv, max_tokens=MAX_TOKENS, temperature=0)
        return reply.choices[0].message.content

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, convs))
    return len(convs) / (time.perf_counter() - started)


def through_rung(base: str, model: str, convs, concurrency: int) -> float:
    from rung.core.endpoint import EndpointChat, EndpointSettings

    chat = EndpointChat(EndpointSettings(model=model, api_base=base, concurrency=concurrency))
    started = time.perf_counter()
    chat.chat(convs, max_new_tokens=MAX_TOKENS)
    return len(convs) / (time.perf_counter() - started)


def through_probe(base: str, model: str, n: int, concurrency: int, work: Path) -> tuple[float, float]:
    """(rows/s while answering, as probe's own per-row timing says; rows/s end to end, with the fixed costs:
    reading rows, scoring, evidence.yaml, probe.md and the plot)."""
    from rung.core.settings import ProbeSettings
    from rung.engines.probe import ProbeInputs, probe

    out = Path(tempfile.mkdtemp(dir=work))
    settings = ProbeSettings(model=f"openai:{model}", max_rows=n, max_new_tokens=MAX_TOKENS, api_base=base,
                             concurrency=concurrency)
    started = time.perf_counter()
    evidence = probe(settings, ProbeInputs(eval_path=EVAL, out_dir=out, goal="schema"), echo=lambda line: None)
    return 1 / evidence["rungs"]["zero_shot"]["seconds_per_row"], n / (time.perf_counter() - started)


def gate_seconds(baseline: str, candidate: str, n: int, base: str | None, work: Path) -> float:
    from rung.core.settings import GateSettings
    from rung.engines.gate import GateInputs, gate

    settings = GateSettings(baseline=baseline, candidate=candidate, max_rows=n, max_new_tokens=MAX_TOKENS, api_base=base)
    inputs = GateInputs(eval_path=EVAL, out_dir=Path(tempfile.mkdtemp(dir=work)), goal="schema")
    started = time.perf_counter()
    gate(settings, inputs, echo=lambda line: None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from rung.core.models import builtin_tiny_path

    model_dir = str(builtin_tiny_path())
    work = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    process, base = start_server(model_dir, work / "serve.log")
    try:
        convs = conversations(args.rows)
        bare(base, model_dir, convs[:4], 1)  # warm-up: the server's first requests compile and allocate
        results: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for concurrency in (1, 4):
                results.setdefault(f"bare c{concurrency}", []).append(bare(base, model_dir, convs, concurrency))
                results.setdefault(f"rung c{concurrency}", []).append(through_rung(base, model_dir, convs, concurrency))
                answering, end_to_end = through_probe(base, model_dir, args.rows, concurrency, work)
                results.setdefault(f"probe c{concurrency}", []).append(answering)
                results.setdefault(f"probe-end-to-end c{concurrency}", []).append(end_to_end)
        medians = {k: statistics.median(v) for k, v in results.items()}
        lines = ["| path | concurrency | rows/s (median of %d) | vs bare client |" % args.repeats, "|---|---|---|---|"]
        for concurrency in (1, 4):
            reference = medians[f"bare c{concurrency}"]
            for path in ("bare", "rung", "probe", "probe-end-to-end"):
                value = medians[f"{path} c{concurrency}"]
                lines.append(f"| {path} | {concurrency} | {value:.2f} | {value / reference:.3f}x |")
        gate_endpoint = gate_seconds(f"openai:{model_dir}", f"openai:{model_dir}", args.rows, base, work)
        gate_local = gate_seconds("builtin:tiny", "builtin:tiny", args.rows, None, work)
        lines += ["", f"rung gate, {args.rows} rows, both models through the endpoint: "
                  f"{gate_endpoint / args.rows * 100:.1f} s per 100 rows ({2 * 100} requests per 100 rows)",
                  f"rung gate, {args.rows} rows, both in process with the forgetting check: "
                  f"{gate_local / args.rows * 100:.1f} s per 100 rows"]
        report = "\n".join(lines)
        print(report)
        print(json.dumps({"medians": medians, "runs": results}, indent=1))
        if args.out:
            args.out.write_text(report + "\n")
    finally:
        process.terminate()
        process.wait(timeout=15)


if __name__ == "__main__":
    main()
