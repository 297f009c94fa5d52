"""probe, gate and the judge against real endpoints on 127.0.0.1 (tests/misbehaving_server.py): the strict
verdict parser, unparsed verdicts reported, --concurrency honoured by the judge, --pattern and --schema,
--timeout bounding a dead server, and Ctrl-C leaving a probe that resumes. No local model loads."""

from __future__ import annotations

import _thread
import json
import threading
import time
from pathlib import Path

import pytest

from ..misbehaving_server import MisbehavingServer
from rung.engines.judge import verdict


@pytest.fixture(autouse=True)
def no_ambient_endpoint(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def rows(tmp_path: Path, n: int = 4) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"input": f"q{i}", "output": "SELECT 1;"}) + "\n" for i in range(n)))
    return path


def gate_args(tmp_path: Path, server: MisbehavingServer, *extra) -> list:
    return ["gate", "--baseline", "openai:alpha", "--candidate", "openai:alpha", "--eval", rows(tmp_path),
            "--api-base", server.base_url, "--timeout", "5", "--retries", "0", "--json", *extra]


@pytest.mark.parametrize("reply, expected", [
    ("This answer does NOT PASS. FAIL.", 0.0), ("PASS", 1.0), ("fail.", 0.0), ("Verdict: pass", 1.0),
    ("FAIL, not PASS", 0.0), ("The reference says X; the answer says X. PASS", 1.0),
    ("It might pass at a glance, but FAIL", 0.0), ("It does not pass.", 0.0), ("doesn't PASS", 0.0),
    ('{"verdict": "PASS"}', 1.0), ('```json\n{"verdict": "fail"}\n```', 0.0), ('{"pass": false}', 0.0),
    ("PASS or FAIL", None), ("PASS/FAIL", None), ("not FAIL", None), ("maybe", None), ("", None),
    ("PASSING grade", None), ("bypass", None), (None, None),
])
def test_the_last_verdict_counts_and_negations_fail(reply, expected):
    assert verdict(reply) == expected


def test_unparsed_verdicts_are_reported_with_a_warning(rung, tmp_path):
    with MisbehavingServer("reply:maybe, hard to say") as server:
        result = rung(*gate_args(tmp_path, server, "--metric", "judge", "--judge-model", "openai:alpha",
                                 "--out", tmp_path / "g"))
    assert result.exit_code == 1, result.output  # DON'T SHIP: 0 against 0
    gate = json.loads((tmp_path / "g" / "gate.json").read_text())
    assert gate["unparsed_verdicts"] == {"baseline": 4, "candidate": 4}
    log = [json.loads(line) for line in (tmp_path / "g" / "judge_candidate.jsonl").read_text().splitlines()]
    assert [entry["verdict"] for entry in log] == [None] * 4


def test_the_warning_reaches_the_console(rung, tmp_path):
    with MisbehavingServer("reply:no idea") as server:
        args = [a for a in gate_args(tmp_path, server, "--metric", "judge", "--judge-model", "openai:alpha")
                if a != "--json"]
        result = rung(*args)
    assert result.exit_code == 1
    assert "the judge gave no PASS/FAIL verdict on 4 of 4 answers (100%)" in result.output


def test_the_judge_honours_concurrency(rung, tmp_path):
    with MisbehavingServer("reply:PASS", delay=0.05) as server:
        result = rung(*gate_args(tmp_path, server, "--metric", "judge", "--judge-model", "openai:alpha",
                                 "--concurrency", "1"))
    assert result.exit_code == 1, result.output
    assert server.requests == 4 * 2 * 2 and server.max_in_flight == 1
    assert json.loads(result.output)["candidate"]["score"] == 1.0


@pytest.mark.parametrize("pattern, score", [("^SELECT", 1.0), ("^INSERT", 0.0)])
def test_pattern_drives_the_regex_metric(rung, tmp_path, pattern, score):
    with MisbehavingServer("reply:SELECT count(*) FROM t;") as server:
        result = rung(*gate_args(tmp_path, server, "--metric", "regex", "--pattern", pattern))
    assert result.exit_code == 1, result.output
    verdict_ = json.loads(result.output)
    assert verdict_["metric"] == "regex" and verdict_["candidate"]["score"] == score


def test_a_pattern_that_backtracks_without_end_is_stopped(rung, tmp_path):
    # (a|a)+$ against 40 a's and a "!": 2**40 ways to fail; the regex engine's timeout stops it (1 s of its clock)
    with MisbehavingServer("reply:" + "a" * 40 + "!") as server:
        result = rung(*gate_args(tmp_path, server, "--pattern", "(a|a)+$"))
    assert result.exit_code == 2 and "backtrack without end" in result.output


def test_a_pattern_alone_picks_regex_and_a_schema_alone_picks_json_schema(rung, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["a"]}))
    with MisbehavingServer('reply:{"a": 1}') as server:
        by_schema = json.loads(rung(*gate_args(tmp_path, server, "--schema", schema)).output)
        by_pattern = json.loads(rung(*gate_args(tmp_path, server, "--pattern", r'"a"')).output)
    assert by_schema["metric"] == "json_schema" and by_schema["candidate"]["score"] == 1.0
    assert by_pattern["metric"] == "regex" and by_pattern["candidate"]["score"] == 1.0


def test_a_dead_endpoint_fails_a_probe_in_seconds_and_leaves_nothing(rung, tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text("goal: style\n")
    with MisbehavingServer("silent") as server:
        started = time.monotonic()
        result = rung("probe", "--answers", answers, "--eval", rows(tmp_path), "--model", "openai:alpha",
                      "--api-base", server.base_url, "--timeout", "0.5", "--retries", "0", "--out", tmp_path / "p")
    assert result.exit_code == 2 and "did not answer within 0.5 s (no retries)" in result.output
    assert time.monotonic() - started < 15  # the failure mode: the 30 s default timeout
    assert not (tmp_path / "p").exists()


def test_ctrl_c_leaves_a_probe_that_resumes(tmp_path):
    from rung.core.settings import ProbeSettings
    from rung.engines.probe import CHUNK, ProbeInputs, probe

    n = CHUNK + 8
    out = tmp_path / "p"
    answers = out / "answers.jsonl"

    def request(server: MisbehavingServer) -> tuple[ProbeSettings, ProbeInputs]:
        return (ProbeSettings(model="openai:alpha", api_base=server.base_url, timeout_s=30, max_retries=0,
                              concurrency=4), ProbeInputs(eval_path=rows(tmp_path, n), out_dir=out, goal="style"))

    answered = CHUNK + 2  # the whole first chunk, and 2 rows of the second

    def interrupt_once_the_server_stalls(server: MisbehavingServer) -> None:
        deadline = time.monotonic() + 20
        while server.requests < answered + 4 and time.monotonic() < deadline:  # 4 in flight, stalled
            time.sleep(0.01)
        time.sleep(0.3)
        _thread.interrupt_main()

    # the server answers 34 rows, then stalls: Ctrl-C lands while rung waits on the stalled ones
    with MisbehavingServer(f"then_silent:{answered}:SELECT 1;") as stalling:
        threading.Thread(target=interrupt_once_the_server_stalls, args=(stalling,), daemon=True).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            probe(*request(stalling), echo=lambda line: None)
        waited = time.monotonic() - started
    assert waited < 20  # not the 30 s timeout: the stalled requests were abandoned
    assert len(answers.read_text().splitlines()) == answered  # the 2 of the unfinished chunk are kept too
    assert (out / "probe.json").is_file()
    with MisbehavingServer("reply:SELECT 1;") as server:
        evidence = probe(*request(server), echo=lambda line: None)
    assert server.requests == n - answered  # only the rows without an answer are asked again
    assert evidence["rungs"]["zero_shot"]["score"] == 1.0


def test_reruns_reuse_their_own_folders_and_overwrite_vouches_for_a_foreign_one(rung, tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text("goal: style\n")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    (foreign / "answers.jsonl").write_text('{"rung": "zero_shot", "row": 0, "fingerprint": "x", "output": "forged"}\n')
    with MisbehavingServer("reply:SELECT 1;") as server:
        probe = ["probe", "--answers", answers, "--eval", rows(tmp_path), "--model", "openai:alpha",
                 "--api-base", server.base_url, "--timeout", "5"]
        assert rung(*probe, "--out", tmp_path / "p").exit_code == 0
        asked = server.requests
        again = rung(*probe, "--out", tmp_path / "p")
        assert again.exit_code == 0 and server.requests == asked  # resumed: every answer was there
        assert "(all from an earlier run)" in again.output
        refused = rung(*probe, "--out", foreign)
        assert refused.exit_code == 2 and "--resume" in refused.output
        assert rung(*probe, "--out", foreign, "--overwrite").exit_code == 0
        assert server.requests == asked + 4  # the planted answers were not used
        assert (foreign / "notes.txt").read_text() == "mine\n" and (foreign / "probe.json").is_file()
        gate = gate_args(tmp_path, server, "--out", tmp_path / "g")
        assert rung(*gate).exit_code == 1 and rung(*gate).exit_code == 1  # its own gate.json: a rerun may write
