"""CPT data: corpus discovery, pieces, packing with the document separator, held-out split, exact cursors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rung.core.errors import RungError
from rung.core.settings import CPTSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "domain_corpus" / "corpus"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from rung.core.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def _corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    paragraphs = [f"Paragraph {i}: the tide at Aldmere turns at {i % 12} o'clock, wind force {i % 9}." for i in range(300)]
    (folder / "a.txt").write_text("\n\n".join(paragraphs[:150]) + "\n")
    (folder / "b.md").write_text("\n\n".join(paragraphs[150:]) + "\n")
    rows = [{"text": f"Log entry {i}. Vessel {i} cleared berth {i % 7}."} for i in range(80)]
    (folder / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "skip.txt").write_text("never read")
    return folder


def test_corpus_files_reports_every_problem_at_once(tmp_path):
    from rung.trainers.cpt import corpus_files

    (tmp_path / "empty").mkdir()
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(RungError) as error:
        corpus_files([tmp_path / "missing", tmp_path / "empty", tmp_path / "data.csv"])
    lines = error.value.message.splitlines()
    assert len(lines) == 3
    assert "does not exist" in lines[0] and "no .txt, .md or .jsonl" in lines[1] and "unsupported" in lines[2]


def test_corpus_files_finds_text_skips_hidden(tmp_path):
    from rung.trainers.cpt import corpus_files

    files = corpus_files([_corpus(tmp_path)])
    assert [f.name for f in files] == ["a.txt", "b.md", "c.jsonl"]


def test_pieces_cover_the_file_and_restart_at_any_piece(tmp_path):
    from rung.trainers.cpt import PIECE_BYTES, read_pieces

    path = _corpus(tmp_path) / "a.txt"
    pieces = list(read_pieces(path))
    assert len(pieces) > 1 and all(len(t.encode()) < 5 * PIECE_BYTES for _, t, _ in pieces)
    assert "".join(t for _, t, _ in pieces) == path.read_text()  # nothing lost or duplicated
    assert [end for _, _, end in pieces] == [False] * (len(pieces) - 1) + [True]  # one document per file
    offset = pieces[2][0]
    assert list(read_pieces(path, offset)) == pieces[2:]  # a cursor's byte offset reproduces the rest


def test_bad_jsonl_row_names_file_and_byte(tmp_path):
    from rung.trainers.cpt import read_pieces

    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(RungError, match=r"bad.jsonl \(byte 15\): each line needs a \"text\" string field"):
        list(read_pieces(path))


def test_separator_is_endoftext_not_chat_end_of_turn(tokenizer):
    from rung.trainers.cpt import separator_id

    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.convert_ids_to_tokens(separator_id(tokenizer)) == "<|endoftext|>"
    assert tokenizer.convert_ids_to_tokens(separator_id(tokenizer, "<|im_end|>")) == "<|im_end|>"  # explicit wins
    with pytest.raises(RungError, match="not in the tokenizer"):
        separator_id(tokenizer, "<nope>")


def _interleaved(files, order, held, width):
    """The reading order, re-implemented over whole-file piece lists: `width` files side by side, one piece
    from each in turn, the next file in `order` taking the slot of a finished one."""
    from rung.trainers.cpt import read_pieces

    pieces = {i: list(read_pieces(files[i])) for i in order}
    slots, following, turn, out = [[i, 0] for i in order[:width]], width, 0, []
    while slots:
        turn %= len(slots)
        file_index, k = slots[turn]
        if k == len(pieces[file_index]):
            if following < len(order):
                slots[turn] = [order[following], 0]
                following += 1
            else:
                del slots[turn]
            continue
        slots[turn][1] += 1
        offset, text, doc_end = pieces[file_index][k]
        if (file_index, offset) in held:
            continue
        out.append((text, doc_end))
        turn += 1
    return out


def test_packing_held_out_split_and_exact_resume(tmp_path, tokenizer, monkeypatch):
    import rung.trainers.cpt.corpus as cpt_corpus
    from rung.trainers.cpt import BlockStream, corpus_files, held_out_blocks, plan_corpus, read_pieces, separator_id

    monkeypatch.setattr(cpt_corpus, "INTERLEAVE", 2)  # 3 files, 2 side by side: a finished file hands its slot on
    settings = CPTSettings(max_length=32, eval_fraction=0.1, max_eval_samples=8)
    files = corpus_files([_corpus(tmp_path)])
    sep = separator_id(tokenizer)
    plan = plan_corpus(files, tokenizer, settings, sep)
    assert plan["held_out"] and plan["train_blocks"] > 20

    # the packed stream is exactly the non-held-out pieces, interleaved, each document followed by one
    # separator, cut into 32-token blocks
    stream = BlockStream(plan, tokenizer, seed=1)
    held = {tuple(h) for h in plan["held_out"]}
    expected: list[int] = []
    for text, doc_end in _interleaved(files, stream.order(0), held, 2):
        expected += tokenizer(text, add_special_tokens=False)["input_ids"] + ([sep] if doc_end else [])
    assert len(expected) == plan["train_tokens"]
    n = plan["train_blocks"]
    generator = stream.generate(cpt_corpus.start_cursor())
    blocks = [next(generator) for _ in range(n)]
    assert [b["block"] for b in blocks] == list(range(n))
    assert sum((b["input_ids"] for b in blocks), []) == expected[:n * 32]
    assert sum(1 for t in expected if t == sep) == 2 + 80 - sum(1 for i, _ in plan["held_out"] if i == 2)
    import re

    first = tokenizer.decode(sum((b["input_ids"] for b in blocks[:80]), []))  # ~2 pieces' worth
    sources = {"a" if int(n) < 150 else "b" for n in re.findall(r"Paragraph (\d+):", first)}
    assert len(sources | ({"c"} if "Log entry" in first else set())) >= 2  # interleaved, not file after file

    # held-out text never reaches training
    eval_blocks = held_out_blocks(plan, tokenizer, 8)
    assert eval_blocks and all(len(b) == 32 for b in eval_blocks)
    train_text = tokenizer.decode(sum((b["input_ids"] for b in blocks), []))
    for index, offset in plan["held_out"]:
        _, text, _ = next(read_pieces(files[index], offset))
        assert text.strip()[:60] not in train_text

    # resuming from the cursor recorded for any block yields the same blocks from there, without reading
    # what came before, and continues into the next epoch the same way
    later = [next(generator) for _ in range(n)]  # epoch 1 (partly)
    for k in (1, 7, n - 1, n + 3):
        fresh = BlockStream(plan, tokenizer, seed=1)
        resumed = fresh.generate(json.loads(json.dumps(stream.cursors[k])))  # as stored in trainer_state.json
        got = [next(resumed) for _ in range(5)]
        assert [g["input_ids"] for g in got] == [b["input_ids"] for b in (blocks + later)[k:k + 5]]
        assert fresh.first_block == k and fresh.blocks_read == 5


def test_tiny_corpus_still_gets_a_held_out_piece(tmp_path, tokenizer):
    from rung.trainers.cpt import plan_corpus, separator_id

    (tmp_path / "one.txt").write_text("A single short document about buoys and tides. " * 40)
    plan = plan_corpus([tmp_path / "one.txt"], tokenizer, CPTSettings(max_length=16, eval_fraction=0.01),
                       separator_id(tokenizer))
    assert plan["held_out"] == [[0, 0]] and plan["train_tokens"] == 0


def test_example_corpus_plans(tokenizer):
    from rung.trainers.cpt import corpus_files, plan_corpus, separator_id

    files = corpus_files([EXAMPLE])
    assert sorted(f.suffix for f in files) == [".jsonl", ".md", ".txt", ".txt"]
    assert sum(f.stat().st_size for f in files) < 400_000
    plan = plan_corpus(files, tokenizer, CPTSettings(max_length=128), separator_id(tokenizer))
    assert plan["train_blocks"] > 500 and 0 < plan["eval_tokens"] <= 64 * 128 + 4096


def test_general_slice_is_disjoint_from_tiny_base_pretraining():
    from rung.trainers import forgetting

    general, pretrain = set(forgetting.general_topic_names()), set(forgetting.pretraining_topic_names())
    assert len(general) >= 10 and not general & pretrain
    import pydoc_data.topics

    assert general | pretrain == set(pydoc_data.topics.topics)
    assert 30_000 < sum(len(t) for t in forgetting.general_documents()) < 80_000


def test_example_corpus_is_what_its_script_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_corpus", EXAMPLE.parent / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    shipped = sorted(p.name for p in EXAMPLE.iterdir())
    assert shipped == sorted(p.name for p in tmp_path.iterdir())
    for name in shipped:
        assert (tmp_path / name).read_bytes() == (EXAMPLE / name).read_bytes(), name
