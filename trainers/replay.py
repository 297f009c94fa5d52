"""Replay: general rows mixed into fine-tuning so the model keeps what it could do (the usual cure for forgetting).

    N task rows and ratio R (the share of the training rows that are replay) -> k = round(N * R / (1 - R)) replay
    rows, so that k / (N + k) = R up to rounding: 900 task rows at R = 0.1 add round(100.0) = 100 replay rows.

Which replay rows, and where they go, is fixed by the seed (the same run mixes the same rows in the same places).
A source with fewer than k rows is cycled (each pass reshuffled with the seed), so a small general set still
reaches the ratio.

Sources: `--replay FILE` (chat or prompt/completion rows, checked like SFT data; for CPT also text rows or .txt/.md
files), or `--replay builtin`: chat rows cut from the Python help topics that builtin:tiny-base trains on
(trainers/forgetting.py pretraining_topics: PSF licence, always present offline). They are disjoint from the topics
the forgetting check and the gate measure general-text perplexity on, so replay cannot game that measurement.
Each builtin row asks the model to continue a documentation passage from its first line.

Every replay row is converted to the task rows' own shape (TRL needs one format per dataset). CPT mixes by bytes
of text: the replay text is R of the corpus's bytes (trainers/cpt/corpus.py cuts both into ~4 KB pieces, so this is
also R of the pieces). Pure Python: no torch.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.core.rows import conversation, normalise

BUILTIN = "builtin"
BUILTIN_CHARS = 900          # one builtin replay row: up to ~900 characters of a help topic, cut at blank lines
REPLAY_SOURCE = "rung_source"  # the GRPO column that tells replay rows from task rows (their reward differs)


def replay_count(n_task: int, ratio: float) -> int:
    """Replay rows to add to n_task rows so that they are `ratio` of all rows: round(N * R / (1 - R))."""
    if not 0 <= ratio < 1:
        raise RungError(f"replay_ratio {ratio}: expected 0 <= ratio < 1")
    return round(n_task * ratio / (1 - ratio))


def replay_problems(replay: str | None, ratio: float) -> list[str]:
    """What is wrong with --replay / --replay-ratio, one line each (the resolve checks the ratio's range)."""
    problems = []
    if ratio and not replay:
        problems.append(f"--replay-ratio {ratio:g} needs --replay FILE (or --replay {BUILTIN}) to mix in")
    if replay and not ratio:
        problems.append(f"--replay {replay} needs --replay-ratio R (0 < R < 1, e.g. 0.1: a tenth of the rows)")
    if replay and replay != BUILTIN:
        from rung.core.fileio import MAX_TEXT_BYTES
        from rung.core.inputs import input_problem

        problem = input_problem(Path(replay), "--replay file", MAX_TEXT_BYTES)
        if problem:
            problems.append(problem)
    return problems


# ---------------------------------------------------------------------------------------------- sources


def builtin_pairs(max_chars: int = BUILTIN_CHARS) -> list[tuple[str, str]]:
    """(prompt, answer) pairs from the pretraining help topics: the first line of a passage, then the rest."""
    from rung.trainers.forgetting import pretraining_topics

    pairs = []
    for name, text in pretraining_topics():
        chunk: list[str] = []
        for paragraph in [p.strip() for p in text.split("\n\n") if p.strip()] + [""]:
            if paragraph and sum(len(p) for p in chunk) + len(paragraph) <= max_chars:
                chunk.append(paragraph)
                continue
            body = "\n\n".join(chunk)
            first, _, rest = body.partition("\n")
            if first.strip() and rest.strip():
                pairs.append((f'Continue this passage from the Python documentation ("{name}"):\n\n{first.strip()}',
                              rest.strip()))
            chunk = [paragraph[:max_chars]] if paragraph else []
    return pairs


def _pair_of(example: dict) -> tuple[list[dict], str]:
    """(prompt messages, answer text) from a checked SFT row (messages, or prompt/completion as text or lists),
    through core/rows.py, the one normaliser: the conversation before the answer (a text prompt as the user
    turn), and the answer (assistant messages joined)."""
    row = normalise(example)
    if row is None:
        raise RungError(f"not a chat or prompt/completion row: keys {', '.join(sorted(example))}")
    return conversation(row), row["output"]


def source_pairs(replay: str) -> list[tuple[list[dict], str]]:
    """Every replay row of a source as (prompt messages, answer)."""
    if replay == BUILTIN:
        return [([{"role": "user", "content": p}], a) for p, a in builtin_pairs()]
    from rung.trainers.data import load_examples

    return [_pair_of(example) for example in load_examples(Path(replay), "sft")]


def source_texts(replay: str) -> list[str]:
    """A replay source as plain documents, for continued pretraining: text rows, .txt/.md, or chat rows flattened."""
    path = Path(replay)
    if replay == BUILTIN:
        return [f"{p}\n{a}" for p, a in builtin_pairs()]
    if path.suffix.lower() in (".txt", ".md"):
        from rung.core.fileio import read_bytes

        return [read_bytes(path, what="--replay file").decode("utf-8", errors="replace")]
    from rung.trainers.data import check_file, raise_problems

    report = check_file(path)
    raise_problems(report.problems)
    if report.kind == "text":
        return [row["text"] for row in report.examples]
    return ["\n".join(m["content"] for m in prompt) + "\n" + answer
            for prompt, answer in (_pair_of(row) for row in report.examples)]


def shaped_like(pair: tuple[list[dict], str], like: dict) -> dict:
    """A replay (prompt messages, answer) in the shape of the task row `like` (messages, or prompt/completion as
    text or lists), so the mixed dataset has one format."""
    prompt, answer = pair
    if "messages" in like:
        return {"messages": prompt + [{"role": "assistant", "content": answer}]}
    if isinstance(like.get("prompt"), list):
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}
    user = [m["content"] for m in prompt if m["role"] == "user"]
    return {"prompt": user[-1] if user else prompt[-1]["content"], "completion": answer}


# ---------------------------------------------------------------------------------------------- mixing


def draw(items: list[Any], count: int, seed: int) -> list[Any]:
    """`count` items drawn without replacement, cycling (reshuffled each pass) when there are fewer."""
    if count and not items:
        raise RungError("the replay source has no usable rows")
    rng = random.Random(seed)
    drawn: list[Any] = []
    while len(drawn) < count:
        order = list(items)
        rng.shuffle(order)
        drawn += order[:count - len(drawn)]
    return drawn


def mix(task: list[Any], replay: list[Any], seed: int) -> list[Any]:
    """task and replay rows interleaved at seeded positions (task rows keep their order among themselves)."""
    rng = random.Random(seed + 1)
    total = len(task) + len(replay)
    at = set(rng.sample(range(total), len(replay)))
    task_iter, replay_iter = iter(task), iter(replay)
    return [next(replay_iter) if i in at else next(task_iter) for i in range(total)]


def mix_rows(task_rows: list[dict], replay: str | None, ratio: float, seed: int,
             shape=shaped_like) -> tuple[list[dict], int]:
    """(task rows with replay rows mixed in at `ratio`, replay rows added). shape(pair, like) builds one row."""
    if not replay or not ratio or not task_rows:
        return list(task_rows), 0
    count = replay_count(len(task_rows), ratio)
    pairs = draw(source_pairs(replay), count, seed)
    return mix(task_rows, [shape(pair, task_rows[0]) for pair in pairs], seed), count


def replay_note(replay: str | None, added: int, n_task: int) -> str:
    """The log line: what was mixed in, with the share it makes."""
    if not added:
        return ""
    share = added / (n_task + added)
    return (f"Replay: {added} rows from {'the builtin help topics' if replay == BUILTIN else replay} mixed into "
            f"{n_task} task rows ({share:.1%} of the training rows)")


# ---------------------------------------------------------------------------------------------- continued pretraining

REPLAY_CORPUS = "replay_corpus"   # RUN/replay_corpus/replay.txt: the replay text, one more corpus file


def replay_text(replay: str, target_bytes: int, seed: int) -> str:
    """`target_bytes` of replay documents (UTF-8), drawn in a seeded order and cycled, separated by blank lines; the
    last one is cut at the byte target."""
    docs = [d.strip() for d in source_texts(replay) if d.strip()]
    if target_bytes and not docs:
        raise RungError("the replay source has no text")
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < target_bytes:
        order = list(docs)
        rng.shuffle(order)
        for doc in order:
            piece = (doc + "\n\n").encode("utf-8")[: target_bytes - size].decode("utf-8", errors="ignore")
            parts.append(piece)
            size += len(piece.encode("utf-8"))
            if size >= target_bytes or not piece:
                break
        if not parts or not parts[-1]:
            break
    return "".join(parts)


def write_replay_corpus(files: list[Path], replay: str | None, ratio: float, seed: int,
                        out_dir: Path) -> tuple[Path | None, int]:
    """CPT: the replay text as one more corpus file, R of the corpus by bytes: B corpus bytes and ratio R add
    round(B * R / (1 - R)) bytes (trainers/cpt/corpus.py reads both in ~4 KB pieces, so it is R of the pieces too, and
    the replay file's pieces are never held out as domain text). Rewritten only when its text changes, so --resume
    finds the corpus plan it saved. Returns (the file or None, bytes added)."""
    if not replay or not ratio:
        return None, 0
    target = replay_count(sum(Path(f).stat().st_size for f in files), ratio)
    text = replay_text(replay, target, seed)
    path = Path(out_dir) / REPLAY_CORPUS / "replay.txt"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        from rung.core.fileio import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path, len(text.encode("utf-8"))
