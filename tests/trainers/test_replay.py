"""Replay mixing (trainers/replay.py): exact at the stated ratio, deterministic with the seed, shaped like the task rows,
and the builtin set never overlaps the general text the forgetting check measures."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from rung.core.errors import RungError
from rung.trainers import forgetting, replay


@pytest.mark.parametrize("n, ratio, added", [(90, 0.1, 10), (100, 0.5, 100), (240, 0.25, 80), (3, 0.01, 0),
                                            (100, 0.0, 0), (1, 0.9, 9), (8, 1 / 3, 4), (10, 0.15, 2)])
def test_replay_count_is_round_n_r_over_1_minus_r(n, ratio, added):
    assert replay.replay_count(n, ratio) == added
    if added:  # the share of replay rows is the ratio, up to one row's rounding
        assert abs(added / (n + added) - ratio) <= 1 / (n + added)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_a_ratio_outside_0_1_is_refused(ratio):
    with pytest.raises(RungError, match="expected 0 <= ratio < 1"):
        replay.replay_count(10, ratio)


def task_rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(n)]


def test_mixing_is_exact_deterministic_and_keeps_the_task_rows_in_order():
    rows = task_rows(60)
    mixed, added = replay.mix_rows(rows, replay.BUILTIN, 0.25, seed=7)
    assert added == 20 and len(mixed) == 80
    replayed = [r for r in mixed if r not in rows]
    assert len(replayed) == 20 and [r for r in mixed if r in rows] == rows
    assert all(set(r) == {"messages"} and r["messages"][-1]["role"] == "assistant" for r in replayed)
    assert len({json.dumps(r) for r in replayed}) == 20            # drawn without replacement from a bigger source
    again, _ = replay.mix_rows(rows, replay.BUILTIN, 0.25, seed=7)
    assert again == mixed                                           # the seed fixes which rows and where
    other, _ = replay.mix_rows(rows, replay.BUILTIN, 0.25, seed=8)
    assert other != mixed and len(other) == 80
    assert replay.mix_rows(rows, None, 0.0, seed=7) == (rows, 0)


def test_a_small_source_is_cycled_to_reach_the_ratio(tmp_path):
    source = tmp_path / "general.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}) + "\n" for i in range(3)))
    rows = [{"prompt": f"task {i}", "completion": f"answer {i}"} for i in range(10)]
    mixed, added = replay.mix_rows(rows, str(source), 0.5, seed=0)
    assert added == 10 and len(mixed) == 20
    counts = Counter(r["prompt"] for r in mixed if r not in rows)
    assert set(counts) == {"p0", "p1", "p2"} and sorted(counts.values()) == [3, 3, 4]  # each pass uses all 3


@pytest.mark.parametrize("like, expect", [
    ({"messages": []}, {"messages": [{"role": "user", "content": "P"}, {"role": "assistant", "content": "A"}]}),
    ({"prompt": "x", "completion": "y"}, {"prompt": "P", "completion": "A"}),
    ({"prompt": [], "completion": []}, {"prompt": [{"role": "user", "content": "P"}],
                                        "completion": [{"role": "assistant", "content": "A"}]}),
])
def test_replay_rows_take_the_task_rows_shape(like, expect):
    assert replay.shaped_like(([{"role": "user", "content": "P"}], "A"), like) == expect


def test_the_builtin_set_is_disjoint_from_the_forgetting_checks_general_text():
    pairs = replay.builtin_pairs()
    assert len(pairs) > 200
    measured = set(forgetting.general_topic_names())
    named = {prompt.split('("', 1)[1].split('")', 1)[0] for prompt, _ in pairs}
    assert named and not named & measured
    assert named <= set(forgetting.pretraining_topic_names())
    assert all(answer.strip() and len(prompt) + len(answer) <= replay.BUILTIN_CHARS + 200 for prompt, answer in pairs)


def test_replay_flags_are_checked_together(tmp_path):
    assert replay.replay_problems(None, 0.0) == []
    assert "needs --replay FILE" in replay.replay_problems(None, 0.1)[0]
    assert "needs --replay-ratio R" in replay.replay_problems("builtin", 0.0)[0]
    assert "--replay file" in replay.replay_problems(str(tmp_path / "missing.jsonl"), 0.1)[0]


@pytest.mark.slow
def test_sft_trains_on_the_mixed_rows_and_holds_out_task_rows_only(tmp_path, rung, monkeypatch, tiny_model_dir):
    """Stops the real SFT trainer at rung's seam and reads what it was given."""
    from rung.trainers import common

    seen = {}

    class Stop(Exception):
        pass

    def stop(trainer, checkpoint):
        seen["rows"] = len(trainer.train_dataset)
        seen["held"] = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
        raise Stop

    monkeypatch.setattr(common, "run_trainer", stop)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in task_rows(40)))
    out = tmp_path / "out"
    with pytest.raises(Stop):
        rung("train", "sft", "--data", data, "--out", out, "--replay", "builtin", "--replay-ratio", "0.2",
             "--max-length", "64")
    # 40 rows, 10% held out (4), 36 trained on + round(36 x 0.2 / 0.8) = 9 replay rows
    assert seen["rows"] == 45
    held = seen["held"]
    from rung.core.rows import normalise  # held-out rows are kept as training read them (chat messages here)

    assert len(held) == 4 and all(normalise(h)["input"].startswith("q") for h in held)


def test_cpt_replay_is_the_ratio_of_the_corpus_bytes_and_never_domain_eval(tmp_path, tiny_model_dir):
    from rung.core.models import load_tokenizer
    from rung.core.settings import CPTSettings
    from rung.trainers.cpt.corpus import plan_corpus

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Domain words about ledgers and tariffs.\n\n" * 500)  # 41 x 500 = 20,500 bytes
    out = tmp_path / "run"
    path, added = replay.write_replay_corpus([corpus], replay.BUILTIN, 0.2, seed=3, out_dir=out)
    assert len(corpus.read_bytes()) == 20_500 and added == round(20_500 * 0.2 / 0.8) == 5_125  # 20% of all text
    assert len(path.read_bytes()) == added and path.parent.name == replay.REPLAY_CORPUS
    stamp = path.stat().st_mtime_ns
    assert replay.write_replay_corpus([corpus], replay.BUILTIN, 0.2, seed=3, out_dir=out) == (path, added)
    assert path.stat().st_mtime_ns == stamp  # unchanged text is not rewritten: --resume's corpus plan still matches
    settings = CPTSettings(max_length=64, eval_fraction=0.5, max_eval_samples=1000)
    plan = plan_corpus([corpus, path], load_tokenizer(str(tiny_model_dir)), settings, sep=0)
    assert plan["held_out"] and all(index == 0 for index, _ in plan["held_out"])  # only domain pieces held out
    assert replay.write_replay_corpus([corpus], None, 0.0, seed=3, out_dir=out) == (None, 0)


@pytest.mark.parametrize("command", ["sft", "cpt"])
def test_a_ratio_without_a_source_stops_sft_and_cpt_before_any_write(tmp_path, rung, command):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in task_rows(12)))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Some domain text.\n")
    where = ["--data", data] if command == "sft" else ["--corpus", corpus]
    result = rung("train", command, *where, "--out", tmp_path / "out", "--replay-ratio", "0.1")
    assert result.exit_code == 2 and "--replay-ratio 0.1 needs --replay FILE (or --replay builtin)" in result.output
    assert not (tmp_path / "out").exists()
