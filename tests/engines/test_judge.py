"""`--metric judge`: a model grades each answer PASS/FAIL against the reference; here the judge is a real HTTP
server on 127.0.0.1 speaking the OpenAI chat API (it passes answers that contain the word SELECT)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rung.engines.judge import verdict

SQL = Path(__file__).resolve().parents[2] / "examples" / "sql_assistant" / "data"


@pytest.mark.parametrize("reply, expected", [("PASS", 1.0), ("fail.", 0.0), ("Verdict: pass", 1.0),
                                             ("FAIL, not PASS", 0.0), ("maybe", None), ("", None)])
def test_the_last_verdict_a_reply_names_counts(reply, expected):
    assert verdict(reply) == expected


class Judge(BaseHTTPRequestHandler):
    prompts: list[str] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        Judge.prompts.append(prompt)
        graded = prompt.split("Answer to grade:\n", 1)[1]
        answer = "PASS" if "SELECT" in graded else "FAIL"
        data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": answer}}],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Judge.prompts = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_judge_needs_a_judge_model(rung, tmp_path):
    result = rung("gate", "--baseline", "builtin:tiny", "--candidate", "builtin:tiny", "--eval", SQL / "eval.jsonl",
                  "--metric", "judge")
    assert result.exit_code == 2 and "--metric judge needs --judge-model" in result.output


@pytest.mark.slow
def test_the_judge_grades_both_models_in_the_gate(rung, tmp_path, judge_url):
    # the toy model never writes SELECT: the judge fails every answer of both, so nothing ships
    result = rung("gate", "--baseline", "builtin:tiny", "--candidate", "builtin:tiny", "--eval", SQL / "eval.jsonl",
                  "--metric", "judge", "--judge-model", "openai:judge", "--api-base", judge_url,
                  "--rubric", "one SQL query", "--max-rows", "4", "--max-new-tokens", "8", "--out", tmp_path / "g",
                  "--json")
    assert result.exit_code == 1, result.output
    verdict_ = json.loads(result.output)
    assert verdict_["metric"] == "judge" and verdict_["baseline"]["score"] == verdict_["candidate"]["score"] == 0.0
    assert len(Judge.prompts) == 8 and all("Rubric: one SQL query" in p for p in Judge.prompts)
    assert "Reference answer:\nSELECT" in Judge.prompts[0]
    log = [json.loads(line) for line in (tmp_path / "g" / "judge_candidate.jsonl").read_text().splitlines()]
    assert len(log) == 4 and {entry["verdict"] for entry in log} == {0.0}


@pytest.mark.slow
def test_a_plan_gate_step_with_metric_judge_runs_the_judge(rung, tmp_path, judge_url):
    """A plan's gate step takes the judge's settings (judge_model, rubric, api_base) as `rung gate` takes its flags:
    the run grades both models through the judge and records the verdict."""
    import yaml

    plan = {"version": 1, "name": "judged", "route": "fine_tuning", "goal": "domain_task", "base_model": "builtin:tiny",
            "data": {"eval": str(SQL / "eval.jsonl")},
            "steps": [{"id": "gate", "engine": "gate", "settings": {
                "baseline": "builtin:tiny", "candidate": "builtin:tiny", "metric": "judge",
                "judge_model": "openai:judge", "api_base": judge_url, "rubric": "one SQL query", "max_rows": 3,
                "max_new_tokens": 8}}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    result = rung("run", tmp_path / "plan.yaml", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    gate_result = json.loads((tmp_path / "run" / "gate" / "gate.json").read_text())
    assert gate_result["metric"] == "judge" and gate_result["n"] == 3
    assert len(Judge.prompts) == 6 and all("Rubric: one SQL query" in p for p in Judge.prompts)
    assert (tmp_path / "run" / "gate" / "judge_candidate.jsonl").is_file()
