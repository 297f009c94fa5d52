"""`rung probe`: measure the cheap rungs on the user's own model and held-out rows, and write the evidence.

    rows (--eval, core/rows.py's shapes; each keeps its system message, which opens every prompt)
                                                 ─► zero-shot: a system prompt alone
                                                 ─► few-shot: the system prompt + --examples as shots
                                                 ─► RAG: the rag engine's index over --docs, top chunks in the prompt
                                                 ─► lora_short: a short LoRA SFT on --examples (local models only)
    every answer scored with one task metric (engines/metrics.py) ─► score + bootstrap 95% CI per rung
    ─► DIR/evidence.yaml (what `rung advise|plan --evidence` read), DIR/probe.md, DIR/probe.png

Every answer is appended to DIR/answers.jsonl as it arrives, keyed by rung, row and a fingerprint of the
model and the conversation: an interrupted probe (Ctrl-C, a dead server) resumes without asking for the
finished rows again. DIR/probe.json marks a folder the probe wrote: a rerun resumes there; a non-empty
folder without it is refused unless --resume (use the answers in it) or --overwrite (start afresh in it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json, atomic_write_text, atomic_write_yaml, read_text
from rung.core.generation import ChatModel, check_generation, open_chat_model
from rung.core.settings import ProbeSettings
from rung.core.rows import conversation, load_task_rows, merge_system, training_messages
from rung.engines import metrics
from rung.engines.judge import JUDGE, metric_problems, score_rows
from rung.engines.metric_options import implied_metric, metric_option_problems, metric_options
from rung.engines.progress import RowProgress, group_size
from rung.engines.prompts import prompted
from rung.engines.request_checks import endpoint_options, endpoint_problems, local_model_problems, out_problems

Echo = Callable[[str], None]
RUNGS = ("zero_shot", "few_shot", "rag", "lora_short")
ANSWERS_FILE = "answers.jsonl"
PROBE_MARKER = "probe.json"       # written first: this folder is a probe's, a rerun resumes in it
WRITTEN = (ANSWERS_FILE, PROBE_MARKER, "evidence.yaml", "probe.md", "probe.png", "index", "lora_short",
           "lora_short_train.jsonl") + tuple(f"judge_{rung}.jsonl" for rung in ("zero_shot", "few_shot", "rag",
                                                                                 "lora_short"))
RAG_SYSTEM = ("Answer the question from the numbered sources below. If they do not contain the answer, say so. "
              "Answer in the style the task asks for.")


@dataclass
class ProbeInputs:
    """The files a probe reads and writes; every knob is in ProbeSettings (core/settings.py)."""

    eval_path: Path
    out_dir: Path
    goal: str = ""
    answers_path: Path | None = None     # named in the next command probe.md prints
    examples_path: Path | None = None
    docs: Path | None = None             # a folder of documents: the RAG rung (its index: ProbeSettings.index)
    resume: bool = False                 # a non-empty folder the probe did not mark: use its answers
    overwrite: bool = False              # ...or start afresh in it


def model_problems(specs: dict[str, str], backend: str) -> list[str]:
    """The backend that would answer each local model spec (llama.cpp needs a GGUF and llama-cpp-python). The
    specs themselves (folders, hub ids, builtin, a GGUF's header) are checked by local_model_problems."""
    from rung.core.endpoint import is_endpoint
    from rung.core.generation import llama_backend
    from rung.core.inputs import check_model_spec

    problems = []
    for flag, spec in specs.items():
        if is_endpoint(spec) or check_model_spec(spec, Path.cwd(), flag)[1]:
            continue  # an endpoint, or a bad spec local_model_problems reports
        try:
            llama_backend(spec, backend)
        except RungError as error:
            problems.append(f"{flag}: {error.message}")
    return problems


def common_problems(settings: Any, counts: dict[str, int]) -> list[str]:
    """What probe and gate share: generation settings, counts of at least 1, the metric (the target's range is the
    settings' own, core/settings.py)."""
    problems = check_generation(settings.max_new_tokens)
    problems += [f"{flag} {value}: expected 1 or more" for flag, value in counts.items() if value < 1]
    metric = implied_metric(settings.metric, settings.pattern, settings.schema)
    problems += endpoint_problems(settings) + local_model_problems(settings)
    return problems + metric_problems(metric, settings.judge_model) + metric_option_problems(metric, settings.pattern,
                                                                                       settings.schema)


def check_request(settings: ProbeSettings, inputs: ProbeInputs, problems: Sequence[str] = ()) -> list[str]:
    """Every problem, before any model loads or anything is written; `problems`: the settings' own (their
    resolve), reported with the rest."""
    problems = list(problems) + common_problems(settings, {"--max-rows": settings.max_rows, "--num-examples": settings.num_examples,
                                     "--rag-k": settings.rag_k,
                                     "--concurrency": settings.concurrency})
    if inputs.docs is not None and not inputs.docs.is_dir():
        problems.append(f"--docs {inputs.docs}: expected a folder of documents")
    if inputs.resume and inputs.overwrite:
        problems.append("--resume and --overwrite: choose one (resume keeps the answers there, overwrite drops them)")
    if settings.index is not None:
        from rung.rag.backend import check_location

        try:
            check_location(settings.index)
        except RungError as error:
            problems.append(error.message)
    problems += model_problems({"--model": settings.model}, settings.backend)
    return problems + out_problems(inputs.out_dir, PROBE_MARKER, WRITTEN, resume=inputs.resume, overwrite=inputs.overwrite,
                                   hint="pass --resume to use the answers in it, or --overwrite to start afresh")


def fingerprint(model: str, conversation: list[dict[str, str]], max_new_tokens: int) -> str:
    text = json.dumps([model, conversation, max_new_tokens], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


CHUNK = 32  # the most rows asked at once: what an interruption can lose (fewer when the model batches fewer)


class AnswerCache:
    """DIR/answers.jsonl: one line per answer (with the seconds it took), appended and flushed as answers
    arrive."""

    def __init__(self, path: Path, *, fresh: bool = False):
        self.path = path
        self.known: dict[tuple[str, int, str], tuple[str, float]] = {}
        if fresh and path.exists():
            atomic_write_text(path, "")  # --overwrite: the answers there are not this probe's
        elif path.exists():
            for line in read_text(path, what="probe answers").splitlines():
                try:
                    record = json.loads(line)
                    key = (record["rung"], int(record["row"]), record["fingerprint"])
                    self.known[key] = (str(record["output"]), float(record.get("seconds", 0.0)))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill: that row is asked again

    def get(self, rung: str, row: int, key: str) -> tuple[str, float] | None:
        return self.known.get((rung, row, key))

    def add(self, rung: str, rows: list[int], keys: list[str], outputs: list[str], seconds: float) -> None:
        each = round(seconds / max(len(rows), 1), 4)  # as stored, so a resumed probe computes the same means
        from rung.core.out_guard import open_append

        from rung.core.fileio import os_error_text

        try:
            with open_append(self.path) as handle:
                for row, key, output in zip(rows, keys, outputs):
                    self.known[(rung, row, key)] = (output, each)
                    handle.write(json.dumps({"rung": rung, "row": row, "fingerprint": key, "output": output,
                                             "seconds": each}, ensure_ascii=False) + "\n")
                handle.flush()
        except OSError as error:  # a full disk: the answers written so far stay, the next run resumes there
            raise RungError(os_error_text(error, "append to", self.path)) from None


def ask(model: ChatModel, spec: str, rung: str, conversations: list[list[dict[str, str]]], cache: AnswerCache, *,
        max_new_tokens: int, echo: Echo) -> tuple[list[str], float]:
    """Answers for every conversation, cached ones first; progress on echo. Returns (answers, seconds per row)."""
    keys = [fingerprint(spec, c, max_new_tokens) for c in conversations]
    found = [cache.get(rung, i, k) for i, k in enumerate(keys)]
    todo = [i for i, hit in enumerate(found) if hit is None]
    if todo and hasattr(model, "loaded"):
        model.loaded()  # a local model loads before the clock starts: seconds per row are answering time
    cached = len(conversations) - len(todo)
    progress = RowProgress(rung, len(conversations), echo, earlier=cached)
    step = min(CHUNK, group_size(model))
    for start in range(0, len(todo), step):
        batch = todo[start:start + step]
        began = time.perf_counter()
        try:
            answers = model.chat([conversations[i] for i in batch], max_new_tokens=max_new_tokens)
        except BaseException as error:  # Ctrl-C or a failed row: keep the answers that did arrive (endpoints)
            arrived = getattr(error, "partial_results", None) or {}
            if arrived:
                rows = [batch[i] for i in sorted(arrived)]
                cache.add(rung, rows, [keys[i] for i in rows], [arrived[i] for i in sorted(arrived)],
                          time.perf_counter() - began)
            raise
        cache.add(rung, batch, [keys[i] for i in batch], answers, time.perf_counter() - began)
        progress.advance(len(batch), time.perf_counter() - began)
    if not todo:
        echo(f"  {rung}: {len(conversations)}/{len(conversations)} rows (all from an earlier run)")
    done = [cache.get(rung, i, k) for i, k in enumerate(keys)]
    return [hit[0] for hit in done], sum(hit[1] for hit in done) / max(len(done), 1)


def rag_conversations(rows: list[dict[str, str]], docs: Path, out_dir: Path, k: int,
                      echo: Echo, index_location: str | None = None) -> list[list[dict[str, str]]]:
    """The rag engine's index over docs (out_dir/index unless a folder or database URL is given: re-runs embed
    only what changed), top-k chunks per row."""
    from rung.rag.backend import load_index
    from rung.rag.ingest import ingest

    location = index_location or out_dir / "index"
    summary = ingest([str(docs)], location, progress=False)
    echo(f"  rag: index over {docs}: {summary.chunks} chunks ({summary.embedded} embedded now)")
    index = load_index(location)
    conversations = []
    for row in rows:
        hits = index.search(row["input"], k)
        sources = "\n\n".join(f"[{n}] ({hit.where})\n{hit.chunk['text'].strip()}" for n, hit in enumerate(hits, 1))
        asked = {**row, "input": f"Sources:\n\n{sources}\n\nQuestion: {row['input']}"}
        conversations.append(conversation(asked, merge_system(row.get("system", ""), RAG_SYSTEM)))
    return conversations


def short_lora(settings: ProbeSettings, inputs: ProbeInputs, examples: list[dict[str, str]], echo: Echo) -> Path:
    """A short LoRA SFT of the (local) model on the examples; reused when it already finished."""
    from rung.core.settings import SFTSettings
    from rung.trainers.sft import train_sft

    folder = inputs.out_dir / "lora_short"
    if (folder / "metrics.json").exists():
        echo(f"  lora_short: reusing {folder} (delete it to train again)")
        return folder
    data = inputs.out_dir / "lora_short_train.jsonl"
    # each example as the chat it is: its system message, earlier turns, the question and the answer
    atomic_write_text(data, "".join(json.dumps({"messages": training_messages(r)}, ensure_ascii=False) + "\n"
                                    for r in examples))
    sft = SFTSettings(model_name_or_path=settings.model, trust_remote_code=settings.trust_remote_code,
                      max_steps=settings.lora_steps, eval_fraction=0.0, save_steps=10_000, logging_steps=10,
                      max_length=512)
    echo(f"  lora_short: LoRA SFT, {settings.lora_steps} steps on {len(examples)} examples")

    def steps_only(line: str) -> None:  # the trainer's steps and summary; its resolved config is in the folder
        if line.lstrip().startswith(("step ", "Training:", "Done in")):
            echo("    " + line.strip())

    train_sft(sft, data, folder, echo=steps_only)
    return folder


def task_rows(problems: list[str], eval_path: Path, max_rows: int,
              examples_path: Path | None) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(held-out rows, examples), read only when the request itself is sound; every problem raised at once."""
    rows = load_task_rows(eval_path, "eval rows")[:max_rows] if not problems else []
    examples = load_task_rows(examples_path, "examples") if examples_path else []
    if not problems and not rows:
        problems.append(f"{eval_path}: no rows to score")
    if problems:
        raise RungError(problems)
    return rows, examples


def prompt_plans(settings: ProbeSettings, inputs: ProbeInputs, rows: list[dict[str, Any]],
                 examples: list[dict[str, Any]]) -> dict[str, list[list[dict[str, str]]]]:
    """The prompted rungs' conversations: zero-shot, and few-shot with settings.num_examples shots when there are
    examples."""
    plans = {"zero_shot": prompted(inputs.goal, examples, 0, rows)}
    if examples:
        plans["few_shot"] = prompted(inputs.goal, examples, settings.num_examples, rows)
    return plans


def probe(settings: ProbeSettings, inputs: ProbeInputs, echo: Echo = print,
          problems: Sequence[str] = ()) -> dict[str, Any]:
    """Run the probe; returns the evidence mapping it wrote to DIR/evidence.yaml."""
    rows, examples = task_rows(check_request(settings, inputs, problems), inputs.eval_path, settings.max_rows, inputs.examples_path)
    references = [r["output"] for r in rows]
    wanted = implied_metric(settings.metric, settings.pattern, settings.schema)
    metric = JUDGE if wanted == JUDGE else metrics.choose_metric(inputs.goal, references, metric=wanted)
    existed, marked = inputs.out_dir.exists(), (inputs.out_dir / PROBE_MARKER).exists()
    try:
        return run_probe(settings, inputs, rows, examples, references, metric, echo)
    except BaseException:
        # a probe that fails (a dead server, a bad model, Ctrl-C) before its first answer leaves nothing behind;
        # one with answers keeps them, so the next run resumes
        if not (inputs.out_dir / ANSWERS_FILE).exists():
            if not existed:
                shutil.rmtree(inputs.out_dir, ignore_errors=True)
            elif not marked and (inputs.out_dir / PROBE_MARKER).is_file():
                (inputs.out_dir / PROBE_MARKER).unlink()
        raise


def run_probe(settings: ProbeSettings, inputs: ProbeInputs, rows: list[dict[str, str]], examples: list[dict[str, str]], references: list[str],
              metric: str, echo: Echo) -> dict[str, Any]:
    from rung.core.endpoint import is_endpoint
    from rung.core.fileio import make_dir

    make_dir(inputs.out_dir, what="probe folder")
    options = metric_options(metric, settings.pattern, settings.schema)
    marked = (inputs.out_dir / PROBE_MARKER).is_file()
    atomic_write_json(inputs.out_dir / PROBE_MARKER, {"probe": 1, "model": settings.model, "eval": str(inputs.eval_path)})
    cache = AnswerCache(inputs.out_dir / ANSWERS_FILE, fresh=inputs.overwrite and not marked)
    model = open_chat_model(settings.model, trust_remote_code=settings.trust_remote_code, backend=settings.backend,
                            **endpoint_options(settings))
    plans = prompt_plans(settings, inputs, rows, examples)
    if inputs.docs is not None:
        plans["rag"] = rag_conversations(rows, inputs.docs, inputs.out_dir, settings.rag_k, echo, settings.index)
    tunes = bool(examples) and settings.lora_steps > 0 and not is_endpoint(settings.model)  # lora_steps 0: skip it
    answered_by = " through llama.cpp" if type(model).__name__ == "LlamaCppChat" else ""
    echo(f"Probing {settings.model}{answered_by} on {len(rows)} held-out rows ({metric}, target {settings.target:.2f}): "
         + ", ".join(plans) + (", lora_short" if tunes else ""))

    results: dict[str, dict[str, Any]] = {}
    for rung, conversations in plans.items():
        outputs, seconds = ask(model, settings.model, rung, conversations, cache, max_new_tokens=settings.max_new_tokens,
                               echo=echo)
        results[rung] = {"outputs": outputs, "seconds_per_row": seconds}
    if tunes:
        from rung.core.generation import LocalChat

        folder = str(short_lora(settings, inputs, examples, echo))
        tuned = LocalChat(folder, trust_remote_code=settings.trust_remote_code)
        as_trained = [conversation(r) for r in rows]  # the system message and turns it was trained with
        outputs, seconds = ask(tuned, folder, "lora_short", as_trained, cache, max_new_tokens=settings.max_new_tokens,
                               echo=echo)
        results["lora_short"] = {"outputs": outputs, "seconds_per_row": seconds}

    evidence: dict[str, Any] = {"version": 1, "metric": metric, "target": settings.target, "n": len(rows), "rungs": {},
                                "model": settings.model, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for rung, result in results.items():
        scored = score_rows(result["outputs"], rows, metric, judge_model=settings.judge_model, rubric=settings.rubric,
                            log=inputs.out_dir / f"judge_{rung}.jsonl", **endpoint_options(settings), **options)
        mean = round(scored.mean, 4)  # the CI is rounded outward so it always holds the rounded score
        entry: dict[str, Any] = {"score": mean, "ci": [min(mean, round(scored.ci_low, 4)), max(mean, round(scored.ci_high, 4))]}
        entry["seconds_per_row"] = round(result["seconds_per_row"], 4)
        if metric == JUDGE:
            entry["unparsed_verdicts"] = scored.unparsed
            if scored.warning():
                echo(f"  {rung}: {scored.warning()} (judge_{rung}.jsonl)")
        result["score"] = scored
        evidence["rungs"][rung] = entry
    usage = model.usage
    if usage.get("cost_usd") is not None:
        evidence["notes"] = f"endpoint cost ${usage['cost_usd']:.4f} for {usage.get('requests', 0)} requests"
    atomic_write_yaml(inputs.out_dir / "evidence.yaml", evidence)
    from rung.engines.probe_report import write_report

    write_report(settings, inputs, evidence, results, rows, usage)
    return evidence
