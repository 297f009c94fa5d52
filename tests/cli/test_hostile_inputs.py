"""Hostile inputs, command by command: each row exits 2 (or a clean 0), prints no traceback, ends within a few
seconds, and leaves the folder exactly as it found it.

Every row runs `rung.cli.main.main` in-process (CliRunner's isolation), from a fresh folder (`world`) holding
the hostile things: a FIFO, a symlink loop, a folder where a file is expected (and a file where a folder is),
non-UTF-8 bytes, a YAML alias bomb, a foreign non-empty folder, a fake adapter. No row trains or loads a model:
each must fail validation first. An interval timer bounds every row, so a read that blocks on a FIFO fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
import traceback
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

TIME_LIMIT_S = 5.0   # a validation failure is far below a second; the rest is a loaded 2-core machine

SFT_ROW = {"messages": [{"role": "user", "content": "Count rows."}, {"role": "assistant", "content": "SELECT 1;"}]}
DPO_ROW = {"prompt": "Count rows.", "chosen": "SELECT count(*) FROM t;", "rejected": "I don't know."}


def alias_bomb(levels: int = 9) -> str:
    """A "billion laughs" YAML: 10**levels values from a few hundred bytes."""
    lines, previous = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"], "a0"
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*{previous}"] * 10) + "]")
        previous = f"a{level}"
    return "\n".join(lines) + "\n"


def plan_text(steps: list[dict], **data) -> str:
    plan = {"version": 1, "name": "hostile", "route": "fine_tuning", "base_model": "builtin:tiny",
            "data": data or {"train": "good.jsonl"}, "steps": steps}
    return yaml.safe_dump(plan, sort_keys=False)


MANUAL = [{"id": "todo", "engine": "manual"}]


def make_world(root: Path) -> None:
    (root / "good.jsonl").write_text("\n".join(json.dumps(SFT_ROW) for _ in range(12)) + "\n")
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(DPO_ROW) for _ in range(12)) + "\n")
    (root / "corpus.txt").write_text("Some domain text.\n\nMore of it.\n")
    (root / "latin.jsonl").write_bytes(b'{"text": "caf\xe9"}\n\xff\xfe\n')
    (root / "latin.yaml").write_bytes(b"goal: caf\xe9\n")
    (root / "bomb.yaml").write_text(alias_bomb())
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "afile").write_text("a file where a folder is expected\n")
    os.mkfifo(root / "fifo.jsonl")
    os.mkfifo(root / "fifo.txt")
    os.symlink("loop", root / "loop")
    (root / "folder").mkdir()
    (root / "folder" / "x.txt").write_text("x\n")
    (root / "foreign").mkdir()
    (root / "foreign" / "keep.txt").write_text("someone else's\n")
    (root / "adapter").mkdir()
    (root / "adapter" / "adapter_config.json").write_text('{"base_model_name_or_path": "builtin:tiny"}')
    (root / "weights").mkdir()
    (root / "weights" / "config.json").write_text("{}")
    plans = {
        "plan_nan.yaml": plan_text([{"id": "sft", "engine": "sft",
                                     "settings": {"learning_rate": float("nan"), "per_device_train_batch_size": 0}}]),
        "plan_state_id.yaml": plan_text([{"id": "run_state.json", "engine": "manual"}]),
        "plan_report_id.yaml": plan_text([{"id": "report.md", "engine": "manual"}]),
        "plan_resolved_id.yaml": plan_text([{"id": "resolved_plan.yaml", "engine": "manual"}]),
        "plan_self_id.yaml": plan_text([{"id": "plan_self_id.yaml", "engine": "manual"}]),
        "plan_file_id.yaml": plan_text([{"id": "afile", "engine": "manual"}]),
        "plan_list_id.yaml": plan_text([{"id": ["a", "b"], "engine": ["sft"], "from_step": ["x"]}]),
        "plan_fifo.yaml": plan_text(MANUAL, train="fifo.jsonl"),
        "plan_zero.yaml": plan_text(MANUAL, train="/dev/zero"),
        "plan_folder.yaml": plan_text(MANUAL, train="folder"),
        "plan_index_password.yaml": plan_text([{"id": "index", "engine": "rag_index", "settings": {
            "index": "postgresql://me:s3cret@db/rag?table=docs"}}], documents="folder"),
        "plan_index_no_table.yaml": plan_text([{"id": "index", "engine": "rag_index", "settings": {
            "index": "postgresql://me@db/rag"}}], documents="folder"),
        "plan_loop.yaml": plan_text(MANUAL, train="loop"),
        "plan_corpus_fifo.yaml": plan_text(MANUAL, corpus="fifo.txt"),
        "plan_documents_dev.yaml": plan_text(MANUAL, documents="/dev/null"),
        "plan_ok.yaml": plan_text(MANUAL),
        "plan_metric.yaml": plan_text([{"id": "gate", "engine": "gate", "settings": {"metric": "nope.py:overlap"}}]),
    }
    for name, text in plans.items():
        (root / name).write_text(text)
    for name, state in {"garbage": {"version": 1, "steps": {"todo": "garbage"}},
                        "badstatus": {"version": 1, "steps": {"todo": {"status": ["x"] * 5}}}}.items():
        (root / name).mkdir()
        (root / name / "run_state.json").write_text(json.dumps(state))
    (root / "notjson").mkdir()
    (root / "notjson" / "run_state.json").write_text("{not json")
    (root / "fifostate").mkdir()
    os.mkfifo(root / "fifostate" / "run_state.json")
    (root / "answers.yaml").write_text("goal: schema\nprompting_result: inconsistent\nlabeled_examples: 500\n")
    (root / "evidence_nan.yaml").write_text("version: 1\nmetric: m\ntarget: .nan\nn: 0\n"
                                            "rungs: {few_shot: {score: .inf}}\n")
    (root / "rows.jsonl").write_text('{"input": "Count rows.", "output": "SELECT 1;"}\n')
    (root / "metrics.py").write_text("THRESHOLD = 3\n\ndef overlap(prediction, reference, row):\n    return 1.0\n")
    (root / "broken_metric.py").write_text("def overlap(prediction, reference, row)\n    return 1.0\n")
    make_bad_ggufs(root)
    make_hostile_models(root)
    make_hostile_outputs(root)


def make_bad_ggufs(root: Path) -> None:
    """A .gguf that is text, one cut short in its header, a folder of two, an architecture transformers lacks."""
    from ..gguf_helpers import write_header_only_gguf

    (root / "text.gguf").write_text("I am a model, honestly.\n")
    (root / "twogguf").mkdir()
    for path, architecture in ((root / "rwkv.gguf", "rwkv7"), (root / "twogguf" / "a.gguf", "llama"),
                               (root / "twogguf" / "b.gguf", "llama")):
        write_header_only_gguf(path, architecture)
    (root / "cut.gguf").write_bytes((root / "rwkv.gguf").read_bytes()[:40])


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def make_hostile_models(root: Path) -> None:
    """Model folders that are damaged or lie: each must be one line before any load."""
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "vocab_size": 16}
    tensor = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    models = {
        "trunc_model": safetensors_bytes(tensor, b"\0" * 8),                       # half the bytes are missing
        "short_model": (10**12).to_bytes(8, "little") + b"{",                     # a header of a terabyte
        "lying_model": safetensors_bytes({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 16]}}, b"\0" * 16),
        "dtype_model": safetensors_bytes({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16),
        "gap_model": safetensors_bytes({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16),
        "notjson_model": (5).to_bytes(8, "little") + b"\xff\xfe{[x" + b"\0" * 16,
        "archs_model": safetensors_bytes(tensor, b"\0" * 16),
        "sizes_model": safetensors_bytes(tensor, b"\0" * 16),
    }
    for name, weights in models.items():
        (root / name).mkdir()
        (root / name / "model.safetensors").write_bytes(weights)
        (root / name / "config.json").write_text(json.dumps(config))
    (root / "archs_model" / "config.json").write_text(json.dumps({**config, "architectures": "LlamaForCausalLM"}))
    (root / "sizes_model" / "config.json").write_text(json.dumps({**config, "vocab_size": 10**13, "hidden_size": "8"}))
    (root / "trunc.gguf").write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (10**6).to_bytes(8, "little")
                                      + (3).to_bytes(8, "little"))
    (root / "notgguf.gguf").write_text("<html>404 not found</html>\n" * 3)
    (root / "bad_adapter").mkdir()
    (root / "bad_adapter" / "adapter_config.json").write_text(json.dumps({"r": "sixteen",
                                                                         "base_model_name_or_path": "builtin:tiny"}))
    (root / "shard_model").mkdir()
    (root / "shard_model" / "config.json").write_text(json.dumps(config))
    (root / "shard_model" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../../etc/passwd"}}))


SYSTEM_LINES = "".join(f"secretline{i}: private value {i}\n" for i in range(40))


def make_hostile_outputs(root: Path) -> None:
    """What a careless or hostile --out, --schema or --evidence may be."""
    (root / "system.conf").write_text(SYSTEM_LINES)
    os.symlink("system.conf", root / "evidence_link.yaml")
    (root / "victim.txt").write_text("someone's file\n")
    (root / "planted").mkdir()
    (root / "planted" / "probe.json").write_text('{"probe": 1}')
    os.symlink("../victim.txt", root / "planted" / "answers.jsonl")
    (root / "planted_gate").mkdir()
    (root / "planted_gate" / "gate.json").write_text("{}")
    os.symlink("../victim.txt", root / "planted_gate" / "gate.md")
    os.symlink("folder", root / "outlink")
    (root / "fifo_probe").mkdir()
    os.mkfifo(root / "fifo_probe" / "answers.jsonl")
    (root / "schema_notjson.json").write_text("{not json")
    (root / "schema_invalid.json").write_text('{"type": 5}')
    (root / "schema_list.json").write_text("[1, 2]")
    (root / "schema_ok.json").write_text('{"type": "object"}')
    plans = {"plan_openai.yaml": {"base_model": "openai:gpt-4o-mini", "data": {"eval": "rows.jsonl",
                                                                               "examples": "rows.jsonl"},
                                  "steps": [{"id": "prompt", "engine": "prompting"}], "route": "prompting"},
             "plan_openai_sft.yaml": {"base_model": "openai:gpt-4o-mini", "data": {"train": "good.jsonl"},
                                      "steps": [{"id": "sft", "engine": "sft"}]},
             "plan_openai_empty.yaml": {"base_model": "openai: ", "data": {"train": "good.jsonl"}, "steps": MANUAL},
             "plan_gate_limits.yaml": {"base_model": "builtin:tiny", "data": {"eval": "rows.jsonl"},
                                       "steps": [{"id": "gate", "engine": "gate", "settings": {
                                           "candidate": "builtin:tiny", "timeout_s": float("nan"), "max_retries": 99,
                                           "concurrency": 0, "pattern": 5}}]},
             "plan_gate_ok.yaml": {"base_model": "builtin:tiny", "data": {"eval": "rows.jsonl"},
                                   "steps": [{"id": "gate", "engine": "gate", "settings": {
                                       "candidate": "builtin:tiny", "timeout_s": 5, "max_retries": 0,
                                       "pattern": "^SELECT", "judge_model": None}}]},
             "plan_damaged_model.yaml": {"base_model": "./trunc_model", "data": {"train": "good.jsonl"},
                                         "steps": [{"id": "sft", "engine": "sft"}]}}
    for name, fields in plans.items():
        plan = {"version": 1, "name": "hostile", "route": "fine_tuning", **fields}
        (root / name).write_text(yaml.safe_dump(plan, sort_keys=False))


SFT = ["train", "sft", "--data", "good.jsonl", "--out", "out"]
PROBE = ["probe", "--answers", "answers.yaml", "--model", "builtin:tiny", "--out", "probed"]
GATE = ["gate", "--baseline", "builtin:tiny", "--candidate", "builtin:tiny", "--out", "gated"]
DPO = ["train", "dpo", "--data", "pairs.jsonl", "--out", "out"]
CPT = ["train", "cpt", "--corpus", "corpus.txt", "--out", "out"]
EST = ["estimate", "--tokens", "1M", "--gpu", "h100"]
GEN = ["generate", "builtin:tiny", "--prompt", "hi"]
CHECK = ["data", "check", "good.jsonl"]
QUERIES = str(Path(__file__).resolve().parents[2] / "examples" / "support_docs" / "queries.jsonl")

P = PROBE + ["--eval", "rows.jsonl"]
G = GATE + ["--eval", "rows.jsonl"]
REMOTE = ["--model", "openai:x", "--api-base", "https://api.example.invalid/v1"]

# (id, argv, exit code, a fragment the output must hold[, a fragment it must not hold])
ROWS = [
    # rung train sft: settings, types and ranges, all at once
    ("sft-lora-r-abc", SFT + ["--set", "lora_r=abc"], 2, "--set lora_r: expected int"),
    ("sft-batch-size-0", SFT + ["--batch-size", "0"], 2, "--batch-size: must be an integer at least 1"),
    ("sft-learning-rate-nan", SFT + ["--learning-rate", "nan"], 2, "--learning-rate: must be a finite number above 0"),
    ("sft-learning-rate-inf", SFT + ["--learning-rate", "inf"], 2, "finite number above 0, got inf"),
    ("sft-learning-rate-negative", SFT + ["--set", "learning_rate=-1e-4"], 2, "finite number above 0"),
    ("sft-max-length-0", SFT + ["--max-length", "0"], 2, "--max-length: must be an integer at least 1"),
    ("sft-eval-fraction-2", SFT + ["--eval-fraction", "2"], 2, "--eval-fraction: must be a finite number at least 0 and below 1"),
    ("sft-epochs-0", SFT + ["--epochs", "0"], 2, "would train nothing"),
    ("sft-max-steps-negative", SFT + ["--max-steps", "-5", "--epochs", "0"], 2, "at least 1 (or -1), got -5"),
    ("sft-seed-huge", SFT + ["--seed", "99999999999999999999"], 2, "--seed: must be an integer at least 0 and at most"),
    ("sft-batch-size-huge", SFT + ["--batch-size", str(10**12)], 2, "at most 2,147,483,647"),
    ("sft-warmup-ratio-1", SFT + ["--set", "warmup_ratio=1"], 2, "warmup_ratio: must be a finite number at least 0 and below 1"),
    ("sft-eval-strategy-typo", SFT + ["--set", "eval_strategy=step"], 2, 'eval_strategy "step" is not one of'),
    ("sft-target-modules-nested", SFT + ["--set", "lora_target_modules=[[q]]"], 2, "expected a list of str, got an item ['q']"),
    ("sft-all-at-once", SFT + ["--batch-size", "0", "--learning-rate", "nan", "--set", "lora_r=abc"], 2,
     "--batch-size: must be an integer at least 1, got 0\n--learning-rate: must be a finite number above 0, got nan\n"
     "--set lora_r: expected int, got 'abc'"),
    # rung train sft: input files by kind, before they are opened
    ("sft-data-fifo", ["train", "sft", "--data", "fifo.jsonl", "--out", "out"], 2, "is a FIFO (named pipe)"),
    ("sft-data-dev-zero", ["train", "sft", "--data", "/dev/zero", "--out", "out"], 2, "is a character device"),
    ("sft-data-folder", ["train", "sft", "--data", "folder", "--out", "out"], 2, "--data file is a folder"),
    ("sft-data-missing", ["train", "sft", "--data", "nope.jsonl", "--out", "out"], 2, "--data file not found"),
    ("sft-data-symlink-loop", ["train", "sft", "--data", "loop", "--out", "out"], 2, "too many symbolic links"),
    ("sft-data-not-utf8", ["train", "sft", "--data", "latin.jsonl", "--out", "out"], 2, "is not UTF-8 text"),
    ("sft-data-name-not-utf8", ["train", "sft", "--data", os.fsdecode(b"\xff.jsonl"), "--out", "out"], 2,
     "--data file not found"),
    ("sft-eval-fifo", SFT + ["--eval", "fifo.jsonl"], 2, "--eval file is a FIFO"),
    ("sft-config-alias-bomb", SFT + ["--config", "bomb.yaml"], 2, "an alias bomb?"),
    ("sft-set-alias-bomb", SFT + ["--set", "lora_target_modules={" + alias_bomb(8).strip().replace("\n", ", ") + "}"],
     2, "YAML aliases expand to more than"),
    ("sft-config-fifo", SFT + ["--config", "fifo.txt"], 2, "config is a FIFO"),
    ("sft-config-not-utf8", SFT + ["--config", "latin.yaml"], 2, "is not UTF-8 text"),
    ("sft-config-list", SFT + ["--config", "list.yaml"], 2, "expected a mapping of settings"),
    ("sft-base-model-missing", SFT + ["--base-model", "./models/nope"], 2, "--base-model: model path"),
    ("sft-base-model-not-a-model", SFT + ["--base-model", "./folder"], 2, "is not a model folder"),
    ("sft-base-model-gguf-two", SFT + ["--base-model", "twogguf"], 2, "holds 2 GGUF files"),
    ("sft-base-model-unknown-builtin", SFT + ["--base-model", "builtin:tiyn"], 2, 'unknown built-in model "builtin:tiyn"'),
    # rung train sft: --out
    ("sft-out-foreign", ["train", "sft", "--data", "good.jsonl", "--out", "foreign"], 2, "rung did not write it"),
    ("sft-out-is-file", ["train", "sft", "--data", "good.jsonl", "--out", "afile"], 2, "--out afile is a file, not a folder"),
    ("sft-out-under-file", ["train", "sft", "--data", "good.jsonl", "--out", "afile/run"], 2, "--out afile/run: a part of the path is not a folder"),
    ("sft-out-symlink-loop", ["train", "sft", "--data", "good.jsonl", "--out", "loop"], 2, "too many symbolic links"),
    ("sft-out-in-proc", ["train", "sft", "--data", "good.jsonl", "--out", "/proc/rung-hostile/run"], 2,
     "cannot create output folder /proc/rung-hostile/run"),
    ("sft-out-read-only", ["train", "sft", "--data", "good.jsonl", "--out", "readonly/run"], 2, "is not writable"),
    # rung train dpo / cpt
    ("dpo-beta-0", DPO + ["--beta", "0"], 2, "--beta: must be a finite number above 0"),
    ("dpo-learning-rate-negative", DPO + ["--learning-rate", "-1"], 2, "--learning-rate: must be a finite number above 0"),
    ("dpo-data-fifo", ["train", "dpo", "--data", "fifo.jsonl", "--out", "out"], 2, "is a FIFO"),
    ("dpo-out-foreign", ["train", "dpo", "--data", "pairs.jsonl", "--out", "foreign"], 2, "rung did not write it"),
    ("cpt-corpus-fifo", ["train", "cpt", "--corpus", "fifo.txt", "--out", "out"], 2, "corpus path is a FIFO"),
    ("cpt-corpus-dev-zero", ["train", "cpt", "--corpus", "/dev/zero", "--out", "out"], 2, "is a character device"),
    ("cpt-corpus-loop", ["train", "cpt", "--corpus", "loop", "--out", "out"], 2, "too many symbolic links"),
    ("cpt-max-length-1", CPT + ["--max-length", "1"], 2, "--max-length: must be an integer at least 2"),
    ("cpt-general-text-fifo", CPT + ["--general-text", "fifo.txt"], 2, "--general-text file is a FIFO"),
    ("cpt-gpus-0", CPT + ["--gpus", "0"], 2, "Invalid value for '--gpus'"),
    ("cpt-out-foreign", ["train", "cpt", "--corpus", "corpus.txt", "--out", "foreign"], 2, "rung did not write it"),
    # rung run: refused in prepare, before any write
    ("run-settings-nan", ["run", "plan_nan.yaml"], 2, "settings.learning_rate: must be a finite number above 0"),
    ("run-rag-index-url-password", ["run", "plan_index_password.yaml"], 2, "settings.index: --index postgresql://me:***@"),
    ("run-rag-index-url-no-table", ["run", "plan_index_no_table.yaml"], 2, "settings.index: --index postgresql://me@db/rag: no table"),
    ("run-id-run-state", ["run", "plan_state_id.yaml"], 2, 'id "run_state.json" is the name of a file rung writes'),
    ("run-id-report", ["run", "plan_report_id.yaml"], 2, 'id "report.md" is the name of a file rung writes'),
    ("run-id-resolved-plan", ["run", "plan_resolved_id.yaml"], 2, 'id "resolved_plan.yaml" is the name of a file'),
    ("run-id-plan-itself", ["run", "plan_self_id.yaml"], 2, 'id "plan_self_id.yaml" is the name of a file'),
    ("run-id-existing-file", ["run", "plan_file_id.yaml"], 2, "exists and is not a folder"),
    ("run-id-list", ["run", "plan_list_id.yaml"], 2, "unknown engine"),
    ("run-plan-alias-bomb", ["run", "bomb.yaml"], 2, "an alias bomb?"),
    ("run-plan-fifo", ["run", "fifo.txt"], 2, "plan is a FIFO"),
    ("run-plan-folder", ["run", "folder"], 2, "is a directory"),
    ("run-out-is-file", ["run", "plan_ok.yaml", "--out", "afile"], 2, "is a file"),
    ("run-out-symlink-loop", ["run", "plan_ok.yaml", "--out", "loop"], 2, "too many symbolic links"),
    ("run-resume-garbage-record", ["run", "plan_ok.yaml", "--resume", "--out", "garbage"], 2,
     "steps.todo is 'garbage', not a step record; delete"),
    ("run-resume-bad-status", ["run", "plan_ok.yaml", "--resume", "--out", "badstatus"], 2, "steps.todo.status is"),
    ("run-resume-not-json", ["run", "plan_ok.yaml", "--resume", "--out", "notjson"], 2, "not valid JSON"),
    ("run-resume-state-fifo", ["run", "plan_ok.yaml", "--resume", "--out", "fifostate"], 2, "run state is a FIFO"),
    # rung run --dry-run: data paths by kind and role
    ("dry-run-train-fifo", ["run", "plan_fifo.yaml", "--dry-run"], 2, "data file is a FIFO (named pipe)"),
    ("dry-run-train-dev-zero", ["run", "plan_zero.yaml", "--dry-run"], 2, "data file is a character device"),
    ("dry-run-train-folder", ["run", "plan_folder.yaml", "--dry-run"], 2, "data file is a folder"),
    ("dry-run-train-loop", ["run", "plan_loop.yaml", "--dry-run"], 2, "too many symbolic links"),
    ("dry-run-corpus-fifo", ["run", "plan_corpus_fifo.yaml", "--dry-run"], 2, "data path is a FIFO"),
    ("dry-run-documents-device", ["run", "plan_documents_dev.yaml", "--dry-run"], 2, "data path is a character device"),
    ("dry-run-ok", ["run", "plan_ok.yaml", "--dry-run"], 0, "Plan OK. Nothing was run"),
    # rung advise / plan
    ("advise-alias-bomb", ["advise", "--answers", "bomb.yaml"], 2, "an alias bomb?"),
    ("advise-fifo", ["advise", "--answers", "fifo.txt"], 2, "is a FIFO"),
    ("advise-base-model-missing", ["advise", "--answers", "answers.yaml", "--base-model", "./nope"], 2,
     "--base-model ./nope: no such folder"),
    ("advise-base-model-text-gguf", ["advise", "--answers", "answers.yaml", "--base-model", "text.gguf"], 2,
     "text.gguf: not a GGUF file"),
    ("advise-not-utf8", ["advise", "--answers", "latin.yaml"], 2, "is not UTF-8 text"),
    ("advise-folder", ["advise", "--answers", "folder"], 2, "is a directory"),
    ("advise-missing", ["advise", "--answers", "nope.yaml"], 2, "not found"),
    ("plan-alias-bomb", ["plan", "--answers", "bomb.yaml", "--out", "planned"], 2, "an alias bomb?"),
    ("plan-out-is-file", ["plan", "--answers", "bomb.yaml", "--out", "afile"], 2, "is a file"),
    ("plan-metric-not-a-spec", ["plan", "--answers", "answers.yaml", "--out", "planned", "--metric", "metrics.py"], 2,
     "--metric metrics.py: expected FILE.py:NAME"),
    ("plan-metric-no-file", ["plan", "--answers", "answers.yaml", "--out", "planned", "--metric", "nope.py:f"], 2,
     "--metric nope.py:f: no such file"),
    ("run-metric-no-file", ["run", "plan_metric.yaml", "--dry-run"], 2,
     "nope.py:overlap: no such file"),
    # rung advise / plan --evidence
    ("evidence-fifo", ["advise", "--answers", "answers.yaml", "--evidence", "fifo.txt"], 2, "is a FIFO"),
    ("evidence-alias-bomb", ["advise", "--answers", "answers.yaml", "--evidence", "bomb.yaml"], 2, "an alias bomb?"),
    ("evidence-nan", ["advise", "--answers", "answers.yaml", "--evidence", "evidence_nan.yaml"], 2,
     "target: expected a score in (0, 1], got nan"),
    ("evidence-missing", ["plan", "--answers", "answers.yaml", "--evidence", "nope.yaml", "--out", "planned"], 2,
     "not found"),
    ("evidence-list", ["plan", "--answers", "answers.yaml", "--evidence", "list.yaml", "--out", "planned"], 2,
     "expected a mapping"),
    # rung probe / gate: every problem before any model loads
    ("probe-eval-fifo", PROBE + ["--eval", "fifo.jsonl"], 2, "is a FIFO"),
    ("probe-eval-folder", PROBE + ["--eval", "folder"], 2, "is a directory"),
    ("probe-target-nan", PROBE + ["--eval", "rows.jsonl", "--target", "nan"], 2, "--target: must be a finite number above 0 and at most 1, got nan"),
    ("probe-index-url-password", PROBE + ["--eval", "rows.jsonl", "--docs", "folder", "--index",
                                          "postgresql://me:s3cret@db/rag?table=docs"], 2, "the URL holds a password"),
    ("probe-target-zero", PROBE + ["--eval", "rows.jsonl", "--target", "0"], 2, "--target: must be a finite number above 0 and at most 1, got 0.0"),
    ("probe-max-rows-zero", PROBE + ["--eval", "rows.jsonl", "--max-rows", "0"], 2, "--max-rows"),
    ("probe-huge-tokens", PROBE + ["--eval", "rows.jsonl", "--max-new-tokens", "99999999999"], 2, "max"),
    ("probe-metric-typo", PROBE + ["--eval", "rows.jsonl", "--metric", "token_fi"], 2, 'did you mean "token_f1"'),
    ("probe-judge-alone", PROBE + ["--eval", "rows.jsonl", "--metric", "judge"], 2, "needs --judge-model"),
    ("probe-docs-file", PROBE + ["--eval", "rows.jsonl", "--docs", "afile"], 2, "is a file"),
    ("probe-empty-eval", PROBE + ["--eval", "corpus.txt"], 2, "corpus.txt"),
    ("probe-gguf-text", PROBE + ["--eval", "rows.jsonl", "--model", "text.gguf"], 2, "text.gguf: not a GGUF file"),
    ("probe-gguf-cut", PROBE + ["--eval", "rows.jsonl", "--model", "cut.gguf"], 2, "truncated or corrupt"),
    ("probe-gguf-architecture", PROBE + ["--eval", "rows.jsonl", "--model", "rwkv.gguf"], 2,
     'architecture "rwkv7" is not one transformers can read (it reads: llama'),
    ("probe-gguf-two", PROBE + ["--eval", "rows.jsonl", "--model", "twogguf"], 2,
     "holds 2 GGUF files (a.gguf, b.gguf): name the file"),
    ("probe-ollama-bad-name", PROBE + ["--eval", "rows.jsonl", "--model", "ollama:../x"], 2,
     "write ollama:NAME or ollama:NAME:TAG"),
    ("probe-llama-cpp-not-gguf", PROBE + ["--eval", "rows.jsonl", "--backend", "llama.cpp"], 2,
     "backend llama.cpp answers GGUF specs"),
    ("gate-gguf-cut", GATE + ["--eval", "rows.jsonl", "--baseline", "cut.gguf"], 2, "--baseline: "),
    ("gate-eval-fifo", GATE + ["--eval", "fifo.jsonl"], 2, "is a FIFO"),
    ("gate-target-nan", GATE + ["--eval", "rows.jsonl", "--target", "nan"], 2, "--target: must be a finite number above 0 and at most 1, got nan"),
    ("gate-judge-alone", GATE + ["--eval", "rows.jsonl", "--metric", "judge"], 2, "needs --judge-model"),
    # a user metric FILE.py:NAME: imported before any model loads; every failure names the file and the function
    ("probe-metric-no-file", PROBE + ["--eval", "rows.jsonl", "--metric", "nope.py:overlap"], 2,
     "metric nope.py:overlap: no such file"),
    ("probe-metric-no-function", PROBE + ["--eval", "rows.jsonl", "--metric", "metrics.py:overlapp"], 2,
     'metric metrics.py:overlapp: the file has no function overlapp (did you mean "overlap"?)'),
    ("probe-metric-not-callable", PROBE + ["--eval", "rows.jsonl", "--metric", "metrics.py:THRESHOLD"], 2,
     "metric metrics.py:THRESHOLD: THRESHOLD is not a function (it is of type int)"),
    ("gate-metric-syntax-error", GATE + ["--eval", "rows.jsonl", "--metric", "broken_metric.py:overlap"], 2,
     "metric broken_metric.py:overlap: importing the file failed: SyntaxError"),
    ("gate-metric-folder", GATE + ["--eval", "rows.jsonl", "--metric", "folder/x.py:overlap"], 2,
     "metric folder/x.py:overlap: no such file"),
    # probe / gate: endpoint limits, for every new number NaN, infinity, negative, zero and huge
    *[(f"{cmd}-{flag[2:]}-{label}", base + [flag, value], 2, f"Invalid value for '{flag}'")
      for cmd, base in (("probe", P), ("gate", G))
      for flag, values in (("--timeout", ("nan", "inf", "-1", "0", "1e9", "")),
                           ("--retries", ("nan", "-1", "21", "99999999999999999999", "1.5")),
                           ("--concurrency", ("0", "-3", "257", "inf")))
      for label, value in zip(("a", "b", "c", "d", "e", "f"), values)],
    # probe / gate: the regex and json_schema metrics' inputs
    ("probe-regex-without-pattern", P + ["--metric", "regex"], 2, "--metric regex needs --pattern"),
    ("probe-pattern-bad", P + ["--metric", "regex", "--pattern", "(unclosed"], 2, "not a regular expression"),
    ("probe-pattern-empty", P + ["--pattern", ""], 2, "--pattern: expected a regular expression, got an empty"),
    ("probe-pattern-huge", P + ["--pattern", "a" * 5000], 2, "over the limit of 2,000"),
    ("probe-pattern-other-metric", P + ["--metric", "exact_match", "--pattern", "x"], 2, "is for --metric regex"),
    ("probe-json-schema-without-schema", P + ["--metric", "json_schema"], 2, "needs --schema FILE"),
    ("probe-schema-missing", P + ["--schema", "nope.json"], 2, "JSON Schema file not found"),
    ("probe-schema-fifo", P + ["--schema", "fifo.txt"], 2, "is a FIFO"),
    ("probe-schema-dev-zero", P + ["--schema", "/dev/zero"], 2, "is a character device"),
    ("probe-schema-not-json", P + ["--schema", "schema_notjson.json"], 2, "not valid JSON (line 1)"),
    ("probe-schema-invalid", P + ["--schema", "schema_invalid.json"], 2, "not a valid JSON Schema (at type"),
    ("probe-schema-list", P + ["--schema", "schema_list.json"], 2, "is an object (or true/false), not a list"),
    ("probe-schema-other-metric", P + ["--metric", "chrf", "--schema", "schema_ok.json"], 2,
     "is for --metric json_schema"),
    ("gate-regex-without-pattern", G + ["--metric", "regex"], 2, "--metric regex needs --pattern"),
    ("gate-schema-fifo", G + ["--schema", "fifo.txt"], 2, "is a FIFO"),
    # probe / gate: --out folders they did not write, links planted in them, a link as --out
    ("probe-out-foreign", P + ["--out", "foreign"], 2, "pass --resume to use the answers in it, or --overwrite"),
    ("probe-out-planted-link", P + ["--out", "planted"], 2, "answers.jsonl is a symbolic link"),
    ("probe-out-planted-link-overwrite", P + ["--out", "planted", "--overwrite"], 2, "is a symbolic link"),
    ("probe-out-is-link", P + ["--out", "outlink"], 2, "is a symbolic link: name the folder itself"),
    ("probe-out-is-file", P + ["--out", "afile"], 2, "is a file"),
    ("probe-out-loop", P + ["--out", "loop"], 2, "is a symbolic link"),
    ("probe-resume-and-overwrite", P + ["--out", "foreign", "--resume", "--overwrite"], 2, "choose one"),
    ("gate-out-foreign", G + ["--out", "foreign"], 2, "rung did not write it (no gate.json)"),
    ("gate-general-text-dev-zero", G + ["--general-text", "/dev/zero"], 2, "is a character device"),
    ("gate-general-text-fifo", G + ["--general-text", "fifo.txt"], 2, "is a FIFO"),
    ("probe-resume-answers-fifo", P + ["--out", "fifo_probe", "--resume"], 2, "answers.jsonl is a FIFO"),
    ("gate-out-planted-link", G + ["--out", "planted_gate"], 2, "gate.md is a symbolic link"),
    ("gate-out-is-link", G + ["--out", "outlink"], 2, "is a symbolic link"),
    # probe / gate / generate: endpoint settings refused before any request
    ("probe-api-base-newline", P + ["--model", "openai:x", "--api-base", "http://127.0.0.1:1/v1\nX-Evil: 1"], 2,
     "whitespace or control characters"),
    ("probe-api-base-not-http", P + ["--model", "openai:x", "--api-base", "file:///etc/passwd"], 2,
     "is not an http(s) URL"),
    ("probe-api-key-env-empty", P + REMOTE + ["--api-key-env", ""], 2, "give the NAME of the environment variable"),
    ("probe-api-key-env-pasted-key", P + REMOTE + ["--api-key-env", "sk-abc def"], 2, "not the key itself", "sk-abc"),
    ("probe-api-key-env-unset", P + REMOTE + ["--api-key-env", "RUNG_HOSTILE_UNSET_KEY"], 2,
     "RUNG_HOSTILE_UNSET_KEY is not set"),
    ("probe-model-openai-empty", P + ["--model", "openai: "], 2, "names no model"),
    ("gate-judge-model-openai-empty", G + ["--metric", "judge", "--judge-model", "openai:"], 2, "names no model"),
    ("generate-api-base-newline", ["generate", "openai:x", "--prompt", "hi", "--api-base", "http://a:1/v1\r\nX: 1"],
     2, "whitespace or control characters"),
    ("generate-timeout-nan", ["generate", "openai:x", "--prompt", "hi", "--timeout", "nan"], 2,
     "Invalid value for '--timeout'"),
    ("chat-retries-negative", ["chat", "openai:x", "--retries", "-1"], 2, "Invalid value for '--retries'"),
    # models on disk that are truncated, lying or malformed: one line before anything loads
    *[(f"{cmd}-{name.replace('_', '-')}", argv(name), 2, fragment)
      for name, fragment in (("trunc_model", "lie outside the 8 bytes of data (a truncated file?)"),
                             ("short_model", "its header claims 1,000,000,000,000 bytes"),
                             ("lying_model", "does not fill its 16 bytes"),
                             ("dtype_model", "unknown dtype 'F128'"),
                             ("gap_model", "overlap or leave gaps"),
                             ("notjson_model", "header is not JSON"),
                             ("archs_model", "architectures must be a list of class names"),
                             ("sizes_model", "vocab_size must be a whole number from 1 to"),
                             ("shard_model", "a shard is named outside the folder"),
                             ("bad_adapter", "r (the LoRA rank) must be a whole number"))
      for cmd, argv in (("generate", lambda m: ["generate", f"./{m}", "--prompt", "hi"]),
                        ("probe", lambda m: P + ["--model", f"./{m}"]),
                        ("gate", lambda m: G + ["--candidate", f"./{m}"]),
                        ("export", lambda m: ["export", f"./{m}", "--out", "exported"]),
                        ("serve", lambda m: ["serve", f"./{m}", "--dry-run"]))],
    ("chat-model-truncated", ["chat", "./trunc_model"], 2, "a truncated file?"),
    ("serve-gguf-truncated", ["serve", "trunc.gguf", "--dry-run"], 2, "trunc.gguf: not a readable GGUF file, truncated or corrupt"),
    ("serve-gguf-not-gguf", ["serve", "notgguf.gguf", "--dry-run"], 2, "not a GGUF file"),
    ("sft-base-model-truncated", SFT + ["--base-model", "./trunc_model"], 2, "a truncated file?"),
    ("run-base-model-truncated", ["run", "plan_damaged_model.yaml", "--dry-run"], 2, "a truncated file?"),
    # plans whose model is behind an endpoint
    ("run-openai-base-model", ["run", "plan_openai.yaml", "--dry-run"], 0, "Plan OK"),
    ("run-gate-limits", ["run", "plan_gate_limits.yaml", "--dry-run"], 2,
     "settings.timeout_s: must be a finite number above 0 and at most 3,600, got nan"),
    ("run-gate-limits-all-at-once", ["run", "plan_gate_limits.yaml", "--dry-run"], 2,
     "settings.pattern: expected str, got 5"),
    ("run-gate-settings-ok", ["run", "plan_gate_ok.yaml", "--dry-run"], 0, "pattern: ^SELECT"),
    ("run-openai-base-model-sft", ["run", "plan_openai_sft.yaml", "--dry-run"], 2, "engine sft needs the model's weights"),
    ("run-openai-base-model-empty", ["run", "plan_openai_empty.yaml", "--dry-run"], 2, "needs the model's name"),
    # a file rung refuses is never echoed
    ("evidence-symlink-to-system-file", ["advise", "--answers", "answers.yaml", "--evidence", "evidence_link.yaml"], 2,
     "is this an evidence file", "secretline"),
    ("probe-eval-name-with-terminal-escape", P + ["--eval", "nope\x1b[2J.jsonl"], 2, "does not exist", "\x1b"),
    ("probe-out-name-with-terminal-escape", P + ["--out", "afile/\x1b]0;owned\x07"], 2, "not a folder", "\x07"),
    ("probe-model-openai-control-chars", P + ["--model", "openai:x\x1b[2J", "--api-base", "http://127.0.0.1:1/v1"], 2,
     "control characters", "\x1b"),
    ("probe-api-key-env-unicode", P + REMOTE + ["--api-key-env", "KEY\u200b"], 2, "give the NAME"),
    ("serve-log-fifo", ["serve", "builtin:tiny", "--log", "fifo.txt", "--port", "0"], 2, "is a FIFO"),
    ("serve-log-link", ["serve", "builtin:tiny", "--log", "evidence_link.yaml", "--port", "0"], 2,
     "is a symbolic link"),
    ("serve-log-no-folder", ["serve", "builtin:tiny", "--log", "nope/server.log", "--port", "0"], 2,
     "does not exist"),
    ("serve-wait-nan", ["serve", "builtin:tiny", "--wait", "nan"], 2, "Invalid value for '--wait'"),
    ("serve-wait-inf", ["serve", "builtin:tiny", "--wait", "inf"], 2, "Invalid value for '--wait'"),
    ("serve-port-negative", ["serve", "builtin:tiny", "--port", "-1"], 2, "Invalid value for '--port'"),
    ("advise-answers-system-file", ["advise", "--answers", "system.conf"], 2, "is this an answers file", "secretline"),
    ("run-plan-system-file", ["run", "system.conf", "--dry-run"], 2, "is this a plan", "secretline"),
    ("probe-eval-system-file", P + ["--eval", "system.conf"], 2, "system.conf:1: bad JSON", "secretline"),
    # rung estimate
    ("estimate-params-nan", EST + ["--params-b", "nan"], 2, "must be a finite number above 0, got nan"),
    ("estimate-params-inf", EST + ["--params-b", "inf"], 2, "must be a finite number above 0, got inf"),
    ("estimate-params-0", EST + ["--params-b", "0"], 2, "must be a finite number above 0, got 0"),
    ("estimate-params-negative", EST + ["--params-b", "-7"], 2, "must be a finite number above 0"),
    ("estimate-params-huge", EST + ["--params-b", "1e308"], 2, "the estimate overflows"),
    ("estimate-tokens-nan", ["estimate", "--tokens", "nan", "--gpu", "h100", "--params-b", "7"], 2, "is not a number"),
    ("estimate-tokens-huge", ["estimate", "--tokens", "1e400", "--gpu", "h100", "--params-b", "7"], 2, "got inf"),
    ("estimate-tokens-negative", ["estimate", "--tokens", "-5M", "--gpu", "h100", "--params-b", "7"], 2, ">= 0"),
    ("estimate-mfu-nan", EST + ["--params-b", "7", "--mfu", "nan"], 2, "Invalid value for '--mfu'"),
    ("estimate-base-model-missing", EST + ["--base-model", "./models/nope"], 2, "--base-model ./models/nope: no such"),
    ("estimate-base-model-not-a-model", EST + ["--base-model", "./folder"], 2, "not a model folder (no config.json)"),
    ("estimate-json-finite", EST + ["--params-b", "1e100", "--json"], 0, '"params_b": 1e+100'),
    # rung generate / chat
    ("generate-temperature-negative", GEN + ["--temperature", "-1"], 2, "must be a finite number at least 0, got -1.0"),
    ("generate-temperature-nan", GEN + ["--temperature", "nan"], 2, "must be a finite number at least 0, got nan"),
    ("generate-temperature-inf", GEN + ["--temperature", "inf"], 2, "got inf"),
    ("generate-max-new-tokens-0", GEN + ["--max-new-tokens", "0"], 2,
     "must be an integer at least 1 and at most 32,768, got 0"),
    ("generate-max-new-tokens-huge", GEN + ["--max-new-tokens", "2000000000"], 2, "at most 32,768, got 2000000000"),
    ("generate-model-missing", ["generate", "./models/nope", "--prompt", "hi"], 2, "MODEL: model path"),
    ("generate-model-fifo", ["generate", "./fifo.jsonl", "--prompt", "hi"], 2, "is not a model folder"),
    ("generate-gguf-text", ["generate", "text.gguf", "--prompt", "hi"], 2, "not a GGUF file"),
    ("chat-temperature-negative", ["chat", "builtin:tiny", "--temperature", "-0.5"], 2, "at least 0"),
    # rung data check
    ("check-fifo", ["data", "check", "fifo.jsonl"], 2, "data file is a FIFO"),
    ("check-dev-zero", ["data", "check", "/dev/zero"], 2, "is a character device"),
    ("check-folder", ["data", "check", "folder"], 2, "data file is a folder"),
    ("check-not-utf8", ["data", "check", "latin.jsonl"], 2, "is not UTF-8 text"),
    ("check-text-fifo", ["data", "check", "fifo.txt", "--kind", "text"], 2, "is a FIFO"),
    ("check-eval-fraction-2", CHECK + ["--eval-fraction", "2"], 2, "Invalid value for '--eval-fraction'"),
    ("check-max-length-0", CHECK + ["--max-length", "0"], 2, "Invalid value for '--max-length'"),
    ("check-base-model-missing", CHECK + ["--base-model", "./models/nope"], 2, "--base-model: model path"),
    # rung merge
    ("merge-adapter-missing", ["merge", "nope", "--out", "merged"], 2, "adapter folder does not exist"),
    ("merge-adapter-fifo", ["merge", "fifo.txt", "--out", "merged"], 2, "adapter folder is a FIFO"),
    ("merge-full-weights", ["merge", "weights", "--out", "merged"], 2, "holds full model weights"),
    ("merge-out-foreign", ["merge", "adapter", "--out", "foreign"], 2, "rung did not write it"),
    ("merge-out-is-file", ["merge", "adapter", "--out", "afile"], 2, "is a file, not a folder"),
    # --index as a database URL: refused before anything connects or is written; a dead server is one line
    ("rag-index-url-bad-scheme", ["rag", "index", "folder", "--index", "mysql://me@db/rag?table=docs"], 2,
     "mysql:// is not a store rung knows"),
    ("rag-index-url-no-table", ["rag", "index", "folder", "--index", "postgresql://me@db/rag"], 2,
     "no table parameter"),
    ("rag-index-url-bad-table", ["rag", "index", "folder", "--index", "postgresql://me@db/rag?table=a;drop"], 2,
     "name the index with ?table=NAME"),
    ("rag-index-url-password", ["rag", "index", "folder", "--index", "postgresql://me:s3cret@db/rag?table=docs"], 2,
     "the URL holds a password"),
    ("rag-query-url-unreachable-socket", ["rag", "query", "hi", "--index",
                                          "postgresql:///rag?host=/nonexistent-socket-dir&table=docs"], 2,
     "cannot connect to PostgreSQL"),
    ("rag-eval-url-unreachable-tcp", ["rag", "eval", "--queries", QUERIES, "--index",
                                      "postgresql://me@127.0.0.1:1/rag?table=docs"], 2, "cannot connect to PostgreSQL"),
    ("rag-index-url-unreachable", ["rag", "index", "folder", "--index", "postgresql://me@127.0.0.1:1/rag?table=docs"],
     2, "cannot connect to PostgreSQL"),
    ("rag-query-retrieval-typo", ["rag", "query", "hi", "--index", "folder", "--retrieval", "hybird"], 2,
     "'hybird' is not one of"),
    ("rag-query-keyword-weight-nan", ["rag", "query", "hi", "--index", "folder", "--retrieval", "hybrid",
                                      "--keyword-weight", "nan"], 2, "--keyword-weight"),
    # flags every settings field now has (cli/options.py): the field's range, refused before anything is written
    ("sft-warmup-ratio-nan", SFT + ["--warmup-ratio", "nan"], 2, "--warmup-ratio: must be a finite number"),
    ("sft-target-modules-number", SFT + ["--lora-target-modules", "5"], 2, "--lora-target-modules: expected str"),
    ("sft-modules-to-save-bomb", SFT + ["--lora-modules-to-save", "&a [*a, *a, *a, *a, *a, *a, *a, *a, *a]"], 2,
     "Invalid value for '--lora-modules-to-save': '&a [*a, *a, *a, *a, *a, *a, *a, *a, *a]': YAML aliases expand"),
    ("gate-ppl-warn-ratio-nan", GATE + ["--eval", "rows.jsonl", "--ppl-warn-ratio", "nan"], 2,
     "Invalid value for '--ppl-warn-ratio'"),
    ("gate-num-examples-zero", GATE + ["--eval", "rows.jsonl", "--num-examples", "0"], 2,
     "Invalid value for '--num-examples'"),
    ("probe-rag-k-huge", PROBE + ["--eval", "rows.jsonl", "--rag-k", "99999999999"], 2, "Invalid value for '--rag-k'"),
    ("run-gpus-zero", ["run", "plan.yaml", "--gpus", "0"], 2, "Invalid value for '--gpus'"),
]


class TooSlow(Exception):
    pass


def run_rung(argv: list[str], limit: float = TIME_LIMIT_S) -> tuple[int | str, str, float]:
    """(exit code, or "exception" / "timeout"; stdout + stderr; seconds) of `rung ARGV` in this process."""
    from rung.cli.main import main

    def expire(signum, frame):
        raise TooSlow

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    started = time.monotonic()
    code: int | str = 0
    try:
        with CliRunner().isolation() as (_, _, output):
            try:
                main(argv)
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
            except TooSlow:
                code = "timeout"
            except BaseException:  # noqa: BLE001 - the row fails with the traceback shown
                code = "exception"
                output.write(traceback.format_exc().encode())
            text = output.getvalue().decode("utf-8", errors="replace")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, text, time.monotonic() - started


def listing(root: Path) -> list[str]:
    """Every file and folder under root (symlinks not followed), as relative paths."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


@pytest.mark.parametrize("argv, code, fragment, absent", [(*row[1:4], row[4] if len(row) > 4 else None) for row in ROWS],
                         ids=[row[0] for row in ROWS])
def test_hostile_input(tmp_path, monkeypatch, argv, code, fragment, absent):
    make_world(tmp_path)
    if "readonly/run" in argv:
        if os.geteuid() == 0:
            pytest.skip("root writes through chmod 0555; the /proc and file-in-the-way rows cover it")
        (tmp_path / "readonly").mkdir(mode=0o555)
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    exit_code, output, seconds = run_rung(argv)
    assert "Traceback" not in output, output
    assert exit_code == code, output
    assert fragment in output, output
    assert absent is None or absent not in output, output
    assert seconds < TIME_LIMIT_S, f"{seconds:.1f} s"
    assert listing(tmp_path) == before, "left files behind"
    if code:
        assert "Error" in output


def test_estimate_json_is_strict_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, output, _ = run_rung(EST + ["--params-b", "1e100", "--json"])

    def refuse(constant):
        raise ValueError(f"{constant} in --json output")

    assert code == 0 and json.loads(output, parse_constant=refuse)["params_b"] == 1e100


def test_every_row_id_is_unique_and_every_command_is_covered():
    assert len({row[0] for row in ROWS}) == len(ROWS)
    commands = {" ".join(row[1][:2]) if row[1][0] in ("train", "data") else row[1][0] for row in ROWS}
    assert {"train sft", "train dpo", "train cpt", "run", "advise", "plan", "estimate", "generate", "chat",
            "data check", "merge", "probe", "gate", "export", "serve"} <= commands
    assert any("--dry-run" in row[1] for row in ROWS)


@pytest.mark.parametrize("number", [errno.EROFS, errno.ENOSPC, errno.ELOOP, errno.ENOTDIR, errno.EEXIST,
                                    errno.EISDIR, errno.EACCES])
def test_os_errors_on_writes_are_one_line_naming_path_and_operation(tmp_path, monkeypatch, number):
    from rung.core.errors import RungError
    from rung.core.fileio import ERRNO_TEXT, atomic_write_text, make_dir

    def fail(*args, **kwargs):
        raise OSError(number, os.strerror(number))

    target = tmp_path / "sub" / "file.txt"
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(RungError) as info:
        atomic_write_text(target, "x")
    assert info.value.message == f"cannot write {target}: {ERRNO_TEXT[number]}"
    assert os.listdir(tmp_path / "sub") == []          # the temp file is gone too
    monkeypatch.setattr(Path, "mkdir", fail)
    with pytest.raises(RungError) as info:
        make_dir(tmp_path / "new", what="output folder")
    assert info.value.message == f"cannot create output folder {tmp_path / 'new'}: {ERRNO_TEXT[number]}"


def test_a_failed_run_removes_the_out_folder_it_created(tmp_path):
    from rung.core.inputs import fresh_output

    out, kept = tmp_path / "new", tmp_path / "resumable"
    with pytest.raises(RuntimeError):
        with fresh_output(out):
            out.mkdir()
            (out / "resolved_config.yaml").write_text("settings: {}\n")
            raise RuntimeError("model failed to load")
    assert not out.exists()
    with pytest.raises(KeyboardInterrupt):
        with fresh_output(kept):
            (kept / "checkpoints" / "checkpoint-5").mkdir(parents=True)
            raise KeyboardInterrupt
    assert (kept / "checkpoints" / "checkpoint-5").is_dir()   # something --resume continues from stays


def test_rungs_own_out_folder_is_reused_and_overwrite_vouches_for_a_foreign_one(tmp_path):
    from rung.core.inputs import out_dir_problems

    own, foreign = tmp_path / "own", tmp_path / "foreign"
    own.mkdir()
    (own / "resolved_config.yaml").write_text(yaml.safe_dump({"pipeline": "sft", "settings": {"lora_r": 16}}))
    (own / "metrics.json").write_text("{}")
    foreign.mkdir()
    (foreign / "resolved_config.yaml").write_text("just: a file with that name\n")
    assert out_dir_problems(own) == []
    assert out_dir_problems(foreign) and "rung did not write it" in out_dir_problems(foreign)[0]
    assert out_dir_problems(foreign, overwrite=True) == [] and out_dir_problems(foreign, resume=True) == []


# ------------------------------------------------------------------------------- endpoints that misbehave

SECRET = "sk-hostile-" + "0f1e2d3c4b5a69788796"
EP = ["--model", "openai:alpha", "--api-base", "{url}", "--timeout", "1", "--retries", "0"]
EG = ["--baseline", "openai:alpha", "--candidate", "openai:alpha", "--api-base", "{url}", "--timeout", "1",
      "--retries", "0"]
GEN_EP = ["generate", "openai:alpha", "--prompt", "hi", "--api-base", "{url}", "--timeout", "1", "--retries", "0"]

# (id, server mode (tests/misbehaving_server.py), argv ({url}: the server's), OPENAI_API_KEY or None,
#  a fragment the output must hold, one it must not)
ENDPOINT_ROWS = [
    ("probe-server-never-answers", "silent", P + EP, None, "did not answer within 1 s (no retries)", None),
    ("probe-server-trickles", "trickle", P + EP, None, "was still sending its answer after 1 s", None),
    ("probe-server-endless-stream", "sse", P + EP, None, "1 s (no retries)", None),
    ("probe-server-huge-body", "huge", P + EP, None, "the answer was too large", None),
    ("probe-server-huge-chunked-body", "huge_chunked", P + EP, None, "the answer was too large", None),
    ("probe-server-choices-string", 'json:{"choices": "x"}', P + EP, None, '"choices" is a string, not a list', None),
    ("probe-server-message-string", 'json:{"choices": [{"message": "x"}]}', P + EP, None,
     '"choices[0].message" is a string', None),
    ("probe-server-content-numbers", 'json:{"choices": [{"message": {"content": [1]}}]}', P + EP, None,
     "is not a text part", None),
    ("probe-server-not-json", "json:<html>oops</html>", P + EP, None, "not a chat completion", None),
    ("probe-key-trailing-newline", "ok", P + EP, SECRET + "\n", "OPENAI_API_KEY holds leading or trailing whitespace",
     SECRET),
    ("probe-key-inner-tab", "ok", P + EP, SECRET[:6] + "\t" + SECRET[6:], "holds whitespace or control characters",
     SECRET[6:]),
    ("gate-server-401-echoes-the-key", "echo401", G + EG, SECRET, "401 unauthorized", SECRET),
    ("gate-server-choices-null", 'json:{"choices": null}', G + EG, None, '"choices" is null', None),
    ("gate-judge-server-never-answers", "silent", G + EG + ["--metric", "judge", "--judge-model", "openai:j"], None,
     "did not answer within 1 s", None),
    ("generate-server-endless-stream", "sse", GEN_EP, None, "1 s (no retries)", None),
    ("generate-server-trickles", "trickle", GEN_EP, None, "was still sending its answer after 1 s", None),
    ("generate-server-huge-body", "huge", GEN_EP, None, "the answer was too large", None),
    ("generate-server-wrong-types", 'json:{"choices": [{"message": {"content": {"a": 1}}}]}', GEN_EP, None,
     "is an object, not a string", None),
    ("generate-key-trailing-newline", "ok", GEN_EP, SECRET + "\r\n", "OPENAI_API_KEY holds", SECRET),
    ("gate-judge-dies-halfway", "then_silent:3:PASS", G + EG + ["--metric", "judge", "--judge-model", "openai:j"],
     None, "did not answer within 1 s", None),  # the baseline's verdicts were in: nothing of them stays
]


@pytest.mark.parametrize("mode, argv, key, fragment, absent", [row[1:] for row in ENDPOINT_ROWS],
                         ids=[row[0] for row in ENDPOINT_ROWS])
def test_hostile_endpoint(tmp_path, monkeypatch, mode, argv, key, fragment, absent):
    from ..misbehaving_server import MisbehavingServer

    make_world(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    if key is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    before = listing(tmp_path)
    with MisbehavingServer(mode) as server:
        exit_code, output, seconds = run_rung([a.replace("{url}", server.base_url) for a in argv])
    assert "Traceback" not in output, output
    assert exit_code == 2, output
    assert fragment in output and "Error" in output, output
    assert absent is None or absent not in output, output
    assert seconds < TIME_LIMIT_S, f"{seconds:.1f} s"
    assert listing(tmp_path) == before, "left files behind"
    if "key" in fragment or "holds" in fragment:
        assert server.requests == 0  # refused before any request
