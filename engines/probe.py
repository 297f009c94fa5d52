"""`rung probe`: measure the cheap rungs on the user's own model and held-out rows, and write the evidence.

    rows (--eval, the prompting engine's shapes) ─► zero-shot: a system prompt alone
                                                 ─► few-shot: the system prompt + --examples as shots
                                                 ─► RAG: the rag engine's index over --docs, top chunks in the prompt
                                                 ─► lora_short: a short LoRA SFT on --examples (local models only)
    every answer scored with one task metric (engines/metrics.py) ─► score + bootstrap 95% CI per rung
    ─► DIR/evidence.yaml (what `rung advise|plan --evidence` read), DIR/probe.md, DIR/probe.png

Every answer is appended to DIR/answers.jsonl as it arrives, keyed by rung, row and a fingerprint of the
model and the conversation: an interrupted probe resumes without asking for the finished rows again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_text, atomic_write_yaml, read_text
from rung.core.generation import ChatModel, check_generation, open_chat_model
from rung.engines import metrics
from rung.engines.judge import JUDGE, metric_problems, score_rows
from rung.engines.prompting import build_prompt, build_system_prompt, read_rows, to_chat

Echo = Callable[[str], None]
RUNGS = ("zero_shot", "few_shot", "rag", "lora_short")
ANSWERS_FILE = "answers.jsonl"
RAG_SYSTEM = ("Answer the question from the numbered sources below. If they do not contain the answer, say so. "
              "Answer in the style the task asks for.")
GENERIC_SYSTEM = "Answer the request directly, with no preamble."


@dataclass
class ProbeRequest:
    eval_path: Path
    out_dir: Path
    model: str
    goal: str = ""
    answers_path: Path | None = None     # named in the next command probe.md prints
    examples_path: Path | None = None
    docs: Path | None = None
    index: str | None = None             # where the RAG index over docs lives: a folder or a postgresql:// URL
    metric: str | None = None
    target: float = 0.9
    max_rows: int = 50
    num_examples: int = 4                # few-shot shots taken from --examples (in file order)
    max_new_tokens: int = 128
    rag_k: int = 4
    lora_steps: int = 40                 # the short LoRA: optimizer steps on --examples
    api_base: str | None = None
    api_key_env: str | None = None
    concurrency: int = 4
    trust_remote_code: bool = False
    judge_model: str | None = None       # --metric judge: the model that grades (engines/judge.py)
    rubric: str | None = None


def common_problems(req: Any, counts: dict[str, int]) -> list[str]:
    """What probe and gate requests share: generation settings, the target, counts of at least 1, the metric."""
    problems = check_generation(req.max_new_tokens)
    if req.target is not None and not 0 < req.target <= 1:  # also refuses NaN
        problems.append(f"--target {req.target}: expected a score in (0, 1]")
    problems += [f"{flag} {value}: expected 1 or more" for flag, value in counts.items() if value < 1]
    return problems + metric_problems(req.metric, req.judge_model)


def check_request(req: ProbeRequest) -> list[str]:
    """Every problem with the request, before any model loads or anything is written."""
    problems = common_problems(req, {"--max-rows": req.max_rows, "--num-examples": req.num_examples,
                                     "--rag-k": req.rag_k, "--lora-steps": req.lora_steps,
                                     "--concurrency": req.concurrency})
    if req.docs is not None and not req.docs.is_dir():
        problems.append(f"--docs {req.docs}: expected a folder of documents")
    if req.index is not None:
        from rung.core.errors import RungError
        from rung.rag.backend import check_location

        try:
            check_location(req.index)
        except RungError as error:
            problems.append(error.message)
    return problems


def fingerprint(model: str, conversation: list[dict[str, str]], max_new_tokens: int) -> str:
    text = json.dumps([model, conversation, max_new_tokens], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


CHUNK = 32  # rows asked at once: what an interruption can lose, and how often progress is shown


class AnswerCache:
    """DIR/answers.jsonl: one line per answer (with the seconds it took), appended and flushed as answers
    arrive."""

    def __init__(self, path: Path):
        self.path = path
        self.known: dict[tuple[str, int, str], tuple[str, float]] = {}
        if path.exists():
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
        with open(self.path, "a", encoding="utf-8") as handle:
            for row, key, output in zip(rows, keys, outputs):
                self.known[(rung, row, key)] = (output, each)
                handle.write(json.dumps({"rung": rung, "row": row, "fingerprint": key, "output": output,
                                         "seconds": each}, ensure_ascii=False) + "\n")
            handle.flush()


def ask(model: ChatModel, spec: str, rung: str, conversations: list[list[dict[str, str]]], cache: AnswerCache, *,
        max_new_tokens: int, echo: Echo) -> tuple[list[str], float]:
    """Answers for every conversation, cached ones first; progress on echo. Returns (answers, seconds per row)."""
    keys = [fingerprint(spec, c, max_new_tokens) for c in conversations]
    found = [cache.get(rung, i, k) for i, k in enumerate(keys)]
    todo = [i for i, hit in enumerate(found) if hit is None]
    if todo and hasattr(model, "loaded"):
        model.loaded()  # a local model loads before the clock starts: seconds per row are answering time
    cached = len(conversations) - len(todo)
    for start in range(0, len(todo), CHUNK):
        batch = todo[start:start + CHUNK]
        began = time.perf_counter()
        answers = model.chat([conversations[i] for i in batch], max_new_tokens=max_new_tokens)
        cache.add(rung, batch, [keys[i] for i in batch], answers, time.perf_counter() - began)
        echo(f"  {rung}: {cached + start + len(batch)}/{len(conversations)} rows"
             + (f" ({cached} from an earlier run)" if cached else ""))
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
        conversations.append([{"role": "system", "content": RAG_SYSTEM},
                              {"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: {row['input']}"}])
    return conversations


def short_lora(req: ProbeRequest, examples: list[dict[str, str]], echo: Echo) -> Path:
    """A short LoRA SFT of the (local) model on the examples; reused when it already finished."""
    from rung.core.settings import SFTSettings
    from rung.trainers.sft import train_sft

    folder = req.out_dir / "lora_short"
    if (folder / "metrics.json").exists():
        echo(f"  lora_short: reusing {folder} (delete it to train again)")
        return folder
    data = req.out_dir / "lora_short_train.jsonl"
    atomic_write_text(data, "".join(json.dumps({"messages": [{"role": "user", "content": r["input"]},
                                                             {"role": "assistant", "content": r["output"]}]},
                                               ensure_ascii=False) + "\n" for r in examples))
    settings = SFTSettings(model_name_or_path=req.model, trust_remote_code=req.trust_remote_code,
                           max_steps=req.lora_steps, eval_fraction=0.0, save_steps=10_000, logging_steps=10,
                           max_length=512)
    echo(f"  lora_short: LoRA SFT, {req.lora_steps} steps on {len(examples)} examples")
    train_sft(settings, data, folder, echo=lambda line: None)
    return folder


def task_rows(problems: list[str], eval_path: Path, max_rows: int,
              examples_path: Path | None) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(held-out rows, examples), read only when the request itself is sound; every problem raised at once."""
    rows = read_rows(eval_path, "eval rows")[:max_rows] if not problems else []
    examples = read_rows(examples_path, "examples") if examples_path else []
    if not problems and not rows:
        problems.append(f"{eval_path}: no rows to score")
    if problems:
        raise RungError(problems)
    return rows, examples


def best_prompt(goal: str, examples: list[dict[str, str]], shots: int):
    """The prompt the cheap rung gets: a system prompt written from the examples (a plain instruction without
    them) and the first `shots` examples (none: zero-shot)."""
    system = build_system_prompt({"goal": goal, "name": "this task"}, examples, None) if examples else GENERIC_SYSTEM
    return build_prompt(system, examples[:shots])


def probe(req: ProbeRequest, echo: Echo = print) -> dict[str, Any]:
    """Run the probe; returns the evidence mapping it wrote to DIR/evidence.yaml."""
    rows, examples = task_rows(check_request(req), req.eval_path, req.max_rows, req.examples_path)
    references = [r["output"] for r in rows]
    metric = JUDGE if req.metric == JUDGE else metrics.choose_metric(req.goal, references, metric=req.metric)
    existed = req.out_dir.exists()
    try:
        return run_probe(req, rows, examples, references, metric, echo)
    except BaseException:
        # a probe that fails (a dead server, a bad model) before its first answer leaves no folder behind; one
        # with answers keeps them, so the next run resumes
        if not existed and not (req.out_dir / ANSWERS_FILE).exists():
            shutil.rmtree(req.out_dir, ignore_errors=True)
        raise


def run_probe(req: ProbeRequest, rows: list[dict[str, str]], examples: list[dict[str, str]], references: list[str],
              metric: str, echo: Echo) -> dict[str, Any]:
    from rung.core.endpoint import is_endpoint

    req.out_dir.mkdir(parents=True, exist_ok=True)
    cache = AnswerCache(req.out_dir / ANSWERS_FILE)
    model = open_chat_model(req.model, api_base=req.api_base, api_key_env=req.api_key_env,
                            concurrency=req.concurrency, trust_remote_code=req.trust_remote_code)
    plans: dict[str, list[list[dict[str, str]]]] = {
        "zero_shot": [to_chat(best_prompt(req.goal, examples, 0), r["input"]) for r in rows]}
    if examples:
        shots = best_prompt(req.goal, examples, req.num_examples)
        plans["few_shot"] = [to_chat(shots, r["input"]) for r in rows]
    if req.docs is not None:
        plans["rag"] = rag_conversations(rows, req.docs, req.out_dir, req.rag_k, echo, req.index)
    echo(f"Probing {req.model} on {len(rows)} held-out rows ({metric}, target {req.target:.2f}): "
         + ", ".join(plans) + (", lora_short" if examples and not is_endpoint(req.model) else ""))

    results: dict[str, dict[str, Any]] = {}
    for rung, conversations in plans.items():
        outputs, seconds = ask(model, req.model, rung, conversations, cache, max_new_tokens=req.max_new_tokens,
                               echo=echo)
        results[rung] = {"outputs": outputs, "seconds_per_row": seconds}
    if examples and not is_endpoint(req.model):
        from rung.core.generation import LocalChat

        folder = str(short_lora(req, examples, echo))
        tuned = LocalChat(folder, trust_remote_code=req.trust_remote_code)
        plain = [[{"role": "user", "content": r["input"]}] for r in rows]
        outputs, seconds = ask(tuned, folder, "lora_short", plain, cache, max_new_tokens=req.max_new_tokens, echo=echo)
        results["lora_short"] = {"outputs": outputs, "seconds_per_row": seconds}

    evidence: dict[str, Any] = {"version": 1, "metric": metric, "target": req.target, "n": len(rows), "rungs": {},
                                "model": req.model, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for rung, result in results.items():
        scored = score_rows(result["outputs"], rows, metric, judge_model=req.judge_model, rubric=req.rubric,
                            api_base=req.api_base, api_key_env=req.api_key_env, log=req.out_dir / f"judge_{rung}.jsonl")
        mean = round(scored.mean, 4)  # the CI is rounded outward so it always holds the rounded score
        entry: dict[str, Any] = {"score": mean, "ci": [min(mean, round(scored.ci_low, 4)), max(mean, round(scored.ci_high, 4))]}
        entry["seconds_per_row"] = round(result["seconds_per_row"], 4)
        result["score"] = scored
        evidence["rungs"][rung] = entry
    usage = model.usage
    if usage.get("cost_usd") is not None:
        evidence["notes"] = f"endpoint cost ${usage['cost_usd']:.4f} for {usage.get('requests', 0)} requests"
    atomic_write_yaml(req.out_dir / "evidence.yaml", evidence)
    from rung.engines.probe_report import write_report

    write_report(req, evidence, results, rows, usage)
    return evidence
