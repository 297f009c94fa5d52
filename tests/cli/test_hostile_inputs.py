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


SFT = ["train", "sft", "--data", "good.jsonl", "--out", "out"]
PROBE = ["probe", "--answers", "answers.yaml", "--model", "builtin:tiny", "--out", "probed"]
GATE = ["gate", "--baseline", "builtin:tiny", "--candidate", "builtin:tiny", "--out", "gated"]
DPO = ["train", "dpo", "--data", "pairs.jsonl", "--out", "out"]
CPT = ["train", "cpt", "--corpus", "corpus.txt", "--out", "out"]
EST = ["estimate", "--tokens", "1M", "--gpu", "h100"]
GEN = ["generate", "builtin:tiny", "--prompt", "hi"]
CHECK = ["data", "check", "good.jsonl"]
QUERIES = str(Path(__file__).resolve().parents[2] / "examples" / "support_docs" / "queries.jsonl")

# (id, argv, exit code, a fragment the output must hold)
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
    ("advise-not-utf8", ["advise", "--answers", "latin.yaml"], 2, "is not UTF-8 text"),
    ("advise-folder", ["advise", "--answers", "folder"], 2, "is a directory"),
    ("advise-missing", ["advise", "--answers", "nope.yaml"], 2, "not found"),
    ("plan-alias-bomb", ["plan", "--answers", "bomb.yaml", "--out", "planned"], 2, "an alias bomb?"),
    ("plan-out-is-file", ["plan", "--answers", "bomb.yaml", "--out", "afile"], 2, "is a file"),
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
    ("probe-target-nan", PROBE + ["--eval", "rows.jsonl", "--target", "nan"], 2, "--target nan: expected a score"),
    ("probe-index-url-password", PROBE + ["--eval", "rows.jsonl", "--docs", "folder", "--index",
                                          "postgresql://me:s3cret@db/rag?table=docs"], 2, "the URL holds a password"),
    ("probe-target-zero", PROBE + ["--eval", "rows.jsonl", "--target", "0"], 2, "--target 0.0: expected a score"),
    ("probe-max-rows-zero", PROBE + ["--eval", "rows.jsonl", "--max-rows", "0"], 2, "--max-rows"),
    ("probe-huge-tokens", PROBE + ["--eval", "rows.jsonl", "--max-new-tokens", "99999999999"], 2, "max"),
    ("probe-metric-typo", PROBE + ["--eval", "rows.jsonl", "--metric", "token_fi"], 2, 'did you mean "token_f1"'),
    ("probe-judge-alone", PROBE + ["--eval", "rows.jsonl", "--metric", "judge"], 2, "needs --judge-model"),
    ("probe-docs-file", PROBE + ["--eval", "rows.jsonl", "--docs", "afile"], 2, "is a file"),
    ("probe-empty-eval", PROBE + ["--eval", "corpus.txt"], 2, "corpus.txt"),
    ("gate-eval-fifo", GATE + ["--eval", "fifo.jsonl"], 2, "is a FIFO"),
    ("gate-target-nan", GATE + ["--eval", "rows.jsonl", "--target", "nan"], 2, "--target nan: expected a score"),
    ("gate-judge-alone", GATE + ["--eval", "rows.jsonl", "--metric", "judge"], 2, "needs --judge-model"),
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


@pytest.mark.parametrize("argv, code, fragment", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_hostile_input(tmp_path, monkeypatch, argv, code, fragment):
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
            "data check", "merge", "probe", "gate"} <= commands
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
