"""`rung run`: every problem before any work, resolved settings, state + --resume, report.md.

Engines here are small local functions passed to run/execute.py's execute (or patched into the registry for
CLI tests), so these tests check the runner itself in well under a second each; the real engines run in
tests/engines/test_run_prompting.py, tests/engines/test_run_bigger_model.py and tests/cli/test_examples.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rung.engines import registry
from rung.run import execute as run_execute
from rung.run import prepare as run_prepare
from rung.run import state as run_state
from rung.core.protocol import StepResult


def write_plan(folder: Path, steps: list[dict], **top) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "examples.jsonl").write_text('{"input": "a", "output": "b"}\n')
    plan = {"version": 1, "name": "t", "route": "prompting", "base_model": "builtin:tiny",
            "data": {"examples": "data/examples.jsonl"}, "steps": steps, **top}
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def test_every_problem_is_listed_before_any_work(tmp_path, rung):
    plan = write_plan(tmp_path, [
        {"id": "p", "engine": "prompting", "settings": {"num_exampels": 3, "max_new_tokens": "many"}},
        {"id": "x", "engine": "promting"},
        {"id": "s", "engine": "sft", "settings": {"model_name_or_path": "./models/missing", "lerning_rate": 1e-4}},
    ], data={"examples": "data/examples.jsonl", "eval": "data/nope.jsonl"})
    out = tmp_path / "run"
    result = rung("run", plan, "--out", out, "--set", "q.max_steps=3", "--set", "nodot")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    expected = [
        'unknown engine "promting" (did you mean "prompting"?)',
        "data.eval:", "nope.jsonl does not exist",
        'unknown setting "num_exampels" (did you mean "num_examples"?)',
        "max_new_tokens: expected int, got 'many'",
        'unknown setting "lerning_rate" (did you mean "learning_rate"?)',
        "models/missing does not exist",
        "engine sft needs data.train",
        '--set q.max_steps=3: no step "q" in the plan',
        "--set nodot: expected STEP.KEY=VALUE",
    ]
    for fragment in expected:
        assert sum(fragment in line for line in lines) == 1, (fragment, result.output)
    assert "Traceback" not in result.output
    assert not out.exists(), "nothing may be written before the plan checks out"


def test_unknown_top_level_key_and_builtin_model(tmp_path, rung):
    plan = write_plan(tmp_path, [{"id": "p", "engine": "prompting"}], base_model="builtin:tinny", stepz=[])
    result = rung("run", plan, "--dry-run")
    assert result.exit_code == 2
    assert 'unknown key "stepz" (did you mean "steps"?)' in result.output
    assert 'unknown built-in model "builtin:tinny" (did you mean "tiny"?)' in result.output


def test_a_model_folder_without_config_is_named(tmp_path, rung):
    (tmp_path / "weights").mkdir()
    plan = write_plan(tmp_path, [{"id": "p", "engine": "prompting"}], base_model="./weights")
    result = rung("run", plan, "--dry-run")
    assert result.exit_code == 2
    assert "weights is not a model folder (no config.json or adapter_config.json)" in result.output


@pytest.mark.skipif(run_prepare.visible_gpus() > 0, reason="checks the no-GPU message")
def test_gpus_without_a_gpu_is_one_clear_line(tmp_path, rung):
    plan = write_plan(tmp_path, [{"id": "p", "engine": "prompting"}])
    result = rung("run", plan, "--gpus", "2", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: --gpus 2: no CUDA GPU is visible here (torch.cuda.is_available() is False); drop --gpus to run on the CPU"]
    assert not (tmp_path / "run").exists()


def test_dry_run_prints_resolved_settings_and_writes_nothing(tmp_path, rung):
    plan = write_plan(tmp_path, [{"id": "p", "engine": "prompting", "settings": {"num_examples": 2}}])
    result = rung("run", plan, "--dry-run", "--set", "p.max_new_tokens=7")
    assert result.exit_code == 0, result.output
    assert "num_examples: 2" in result.output and "max_new_tokens: 7" in result.output
    assert "batch_size: 8" in result.output  # a default, shown resolved
    assert "[1/1] p (prompting)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "plan.yaml"]


def test_settings_resolve_default_then_plan_then_cli(tmp_path):
    plan = write_plan(tmp_path, [{"id": "s", "engine": "sft", "settings": {"max_steps": 5, "learning_rate": "1e-4"}},
                                 {"id": "d", "engine": "dpo", "from_step": "s"}],
                      route="fine_tuning", adapter="full",
                      data={"train": "data/examples.jsonl", "preferences": "data/examples.jsonl"})
    prep = run_prepare.prepare(plan, sets=["s.max_steps=9", "d.beta=0.2"])
    sft, dpo = prep.steps
    assert sft["settings"]["max_steps"] == 9                  # --set beats plan.yaml
    assert sft["settings"]["learning_rate"] == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as text: coerced
    assert sft["settings"]["per_device_train_batch_size"] == 4  # dataclass default
    assert sft["settings"]["model_name_or_path"] == "builtin:tiny"  # from base_model
    assert sft["settings"]["adapter"] == dpo["settings"]["adapter"] == "full"  # the plan's adapter
    assert dpo["settings"]["beta"] == 0.2
    assert "model_name_or_path" not in dpo["settings"], "a from_step model is the earlier step's output"
    assert Path(prep.plan["data"]["train"]).is_absolute()


def test_relative_model_paths_are_read_from_the_plan_folder(tmp_path, tiny_model_dir):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "models" / "mine")
    plan = write_plan(tmp_path, [{"id": "p", "engine": "prompting"}], base_model="models/mine")
    prep = run_prepare.prepare(plan)
    assert prep.plan["base_model"] == str((tmp_path / "models" / "mine").resolve())


# ------------------------------------------------------------------ running, state, resume ----------

class Recorder:
    """Engines that record their calls; `fail_on` raises there (KeyboardInterrupt mimics Ctrl-C)."""

    def __init__(self, fail_on: str | None = None, error: BaseException | None = None):
        self.calls: list[tuple[str, bool, dict]] = []
        self.fail_on, self.error = fail_on, error

    def lookup(self, engine: str):
        def run(step, ctx):
            self.calls.append((step["id"], ctx.resume, dict(ctx.outputs)))
            if step["id"] == self.fail_on:
                raise self.error
            (ctx.run_dir / "out.txt").write_text(step["id"])
            if step["id"] == "a":
                _write_png(ctx.run_dir / "loss.png")
            return StepResult(outputs={"file": str(ctx.run_dir / "out.txt")}, metrics={"score": 0.5},
                              summary=f"ran {step['id']}")
        return run


def _write_png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure(figsize=(1, 1))
    plt.plot([1, 0])
    plt.savefig(path)
    plt.close()


def three_steps(tmp_path) -> Path:
    return write_plan(tmp_path, [{"id": "a", "engine": "prompting"}, {"id": "b", "engine": "prompting"},
                                 {"id": "c", "engine": "prompting"}],
                      estimate={"gpu": "l4", "gpus": 1, "gpu_hours": 0.5, "wall_hours": 0.5, "memory_gb": 2.0,
                                "cost_usd": 0.36, "steps": [{"step": "a", "gpu_hours": 0.25, "memory_gb": 1.5,
                                                             "cost_usd": 0.18}]})


def test_interrupted_run_resumes_at_the_first_unfinished_step(tmp_path):
    prep = run_prepare.prepare(three_steps(tmp_path), out=tmp_path / "run")
    first = Recorder(fail_on="b", error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_execute.execute(prep, echo=lambda _: None, engine_lookup=first.lookup)
    state = json.loads((tmp_path / "run" / run_state.STATE_FILE).read_text())
    assert [state["steps"][s]["status"] for s in ("a", "b")] == ["done", "failed"]
    assert "c" not in state["steps"]
    assert "Stopped at `b`" in (tmp_path / "run" / "report.md").read_text()

    second = Recorder()
    run_execute.execute(prep, resume=True, echo=lambda _: None, engine_lookup=second.lookup)
    assert [(step, resume) for step, resume, _ in second.calls] == [("b", True), ("c", False)]
    assert second.calls[0][2]["a"]["file"].endswith("a/out.txt"), "finished steps' outputs reach later steps"
    state = json.loads((tmp_path / "run" / run_state.STATE_FILE).read_text())
    assert all(state["steps"][s]["status"] == "done" for s in "abc")
    assert state["steps"]["b"]["attempts"] == 2


def test_a_killed_run_leaves_a_running_step_that_resume_restarts(tmp_path):
    """SIGKILL gives no chance to write 'failed': the state says 'running', and --resume continues it."""
    prep = run_prepare.prepare(three_steps(tmp_path), out=tmp_path / "run")
    run_execute.execute(prep, echo=lambda _: None, engine_lookup=Recorder().lookup)
    state_path = tmp_path / "run" / run_state.STATE_FILE
    state = json.loads(state_path.read_text())
    state["steps"]["c"] = {"engine": "prompting", "status": "running", "attempts": 1}
    state_path.write_text(json.dumps(state))
    again = Recorder()
    run_execute.execute(prep, resume=True, echo=lambda _: None, engine_lookup=again.lookup)
    assert [(step, resume) for step, resume, _ in again.calls] == [("c", True)]


def test_without_resume_every_step_runs_again(tmp_path):
    prep = run_prepare.prepare(three_steps(tmp_path), out=tmp_path / "run")
    run_execute.execute(prep, echo=lambda _: None, engine_lookup=Recorder().lookup)
    again = Recorder()
    run_execute.execute(prep, echo=lambda _: None, engine_lookup=again.lookup)
    assert [step for step, _, _ in again.calls] == ["a", "b", "c"]


def test_report_has_steps_metrics_plots_and_the_estimate_next_to_the_measured_cost(tmp_path):
    prep = run_prepare.prepare(three_steps(tmp_path), out=tmp_path / "run")
    report = run_execute.execute(prep, echo=lambda _: None, engine_lookup=Recorder().lookup).read_text()
    assert report.startswith("# Run report: t")
    for step in "abc":
        assert "## " in report and f". {step}\n" in report
        assert f"[{step}/out.txt]({step}/out.txt)" in report
    assert "![loss](a/loss.png)" in report
    assert "| score | 0.5 |" in report
    assert "## Estimate vs actual" in report
    assert "| step | estimated (plan.yaml, on 1 x l4) | measured (this run, on CPU" in report
    assert "| a | 15 min 0 s GPU time, $0.18, 1.50 GB/GPU | " in report
    assert "| b | - | " in report
    assert "| **total** | 30 min 0 s GPU time, $0.36, 2.00 GB/GPU (30 min 0 s wall) |" in report
    assert "GB peak RSS" in report and "no GPU rented" in report
    resolved = yaml.safe_load((tmp_path / "run" / run_state.RESOLVED_FILE).read_text())
    assert resolved["steps"][0]["settings"]["num_examples"] == 4
    from rung.core.plan import validate_plan

    assert validate_plan(resolved) == [], "resolved_plan.yaml is itself a valid plan"


def test_a_failing_step_says_which_step_and_how_to_continue(tmp_path, rung, monkeypatch):
    from rung.core.errors import RungError

    plan = three_steps(tmp_path)
    recorder = Recorder(fail_on="b", error=RungError("data.eval: row 3 has no output"))
    monkeypatch.setattr(registry, "engine_function", recorder.lookup)
    result = rung("run", plan)
    assert result.exit_code == 2
    assert "step b (prompting): data.eval: row 3 has no output" in result.output
    assert f"rung run {plan.resolve()} --resume" in result.output
    monkeypatch.setattr(registry, "engine_function", Recorder().lookup)
    result = rung("run", plan, "--resume")
    assert result.exit_code == 0, result.output
    assert "[1/3] a: done in an earlier run, skipped (--resume)" in result.output
    assert (tmp_path / "report.md").exists(), "the run root is the plan's folder without --out"


def test_manual_steps_stay_open_and_the_run_moves_on(tmp_path, rung):
    plan = write_plan(tmp_path, [{"id": "collect", "engine": "manual", "description": "Label 100 replies",
                                  "settings": {"done_when": "data/train.jsonl has 100 rows"}}])
    result = rung("run", plan, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Open to-dos" in report and "- [ ] **To do:** Label 100 replies" in report
    assert "done when: data/train.jsonl has 100 rows" in report
    state = json.loads((tmp_path / "run" / run_state.STATE_FILE).read_text())
    assert state["steps"]["collect"]["status"] == "open"


@pytest.mark.skipif(run_prepare.visible_gpus() > 0, reason="checks the no-GPU message")
def test_qlora_without_a_gpu_and_an_uncached_hub_model_offline(tmp_path, rung, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = write_plan(tmp_path, [{"id": "sft", "engine": "sft", "settings": {"adapter": "qlora"}}],
                      route="fine_tuning", base_model="rung-tests/no-such-model",
                      data={"train": "data/examples.jsonl"})
    result = rung("run", plan, "--dry-run")
    assert result.exit_code == 2
    assert 'hub model "rung-tests/no-such-model" is not in the local cache and HF_HUB_OFFLINE=1' in result.output
    assert "adapter qlora needs a CUDA GPU" in result.output and "--set sft.adapter=lora" in result.output


@pytest.mark.slow
def test_sigkill_during_a_step_then_resume_for_real(tmp_path, rung):
    """A real `rung run` process killed with SIGKILL in its second step; --resume skips the first."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "data").mkdir()
    rows = "".join(json.dumps({"input": f"note {i}", "output": f"Thanks for note {i}!"}) + "\n" for i in range(4))
    (tmp_path / "data" / "examples.jsonl").write_text(rows)
    (tmp_path / "data" / "eval.jsonl").write_text(rows)
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "version": 1, "name": "killed", "route": "prompting", "base_model": "builtin:tiny",
        "data": {"examples": "data/examples.jsonl", "eval": "data/eval.jsonl"},
        "steps": [{"id": "first", "engine": "manual", "description": "a to-do"},
                  {"id": "second", "engine": "prompting", "settings": {"max_new_tokens": 4}}]}))
    state_path = tmp_path / "run" / run_state.STATE_FILE
    process = subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", "run", str(plan),
                                "--out", str(tmp_path / "run")], cwd=root, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            steps = json.loads(state_path.read_text())["steps"]
        except (OSError, ValueError, KeyError):
            steps = {}
        if steps.get("second", {}).get("status") == "running":
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    state = json.loads(state_path.read_text())
    assert state["steps"]["first"]["status"] == "open" and state["steps"]["second"]["status"] == "running"

    result = rung("run", plan, "--out", tmp_path / "run", "--resume")
    assert result.exit_code == 0, result.output
    assert "[1/2] first: open in an earlier run, skipped (--resume)" in result.output
    assert "[2/2] second (prompting) - resuming" in result.output
    state = json.loads(state_path.read_text())
    assert state["steps"]["second"]["status"] == "done" and state["steps"]["second"]["attempts"] == 2
    assert (tmp_path / "run" / "second" / "eval_outputs.jsonl").exists()


def test_step_ids_must_be_folder_names_that_do_not_hit_the_data(tmp_path, rung):
    plan = write_plan(tmp_path, [{"id": "../escape", "engine": "prompting"}, {"id": "data", "engine": "manual"}])
    result = rung("run", plan, "--dry-run")
    assert result.exit_code == 2
    assert 'id "../escape" must be a plain folder name' in result.output
    assert 'id "data" is a data folder in the run root' in result.output
    elsewhere = rung("run", plan, "--dry-run", "--out", tmp_path / "elsewhere").output
    assert "must be a plain folder name" in elsewhere and "is a data folder" not in elsewhere


def test_multi_node_flags_reach_the_cpt_launcher(rung, tmp_path, monkeypatch):
    """`rung run --gpus 8 --nodes 2 --node-rank 1 --main-address H` hands the cluster to accelerate's launcher."""
    import yaml

    from rung.trainers import launch
    from rung.core.errors import RungError

    corpus = Path(__file__).resolve().parents[2] / "examples" / "domain_corpus" / "corpus"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "version": 1, "name": "cpt-cluster", "route": "continued_pretraining", "base_model": "builtin:tiny",
        "data": {"corpus": str(corpus)}, "steps": [{"id": "cpt", "engine": "cpt", "settings": {"max_steps": 2}}]}))
    launched = {}

    def fake_launch(pipeline, settings, out_dir, *, job, **kwargs):
        launched.update(kwargs, pipeline=pipeline, corpus=job["corpus"], out_dir=str(out_dir))
        raise RungError("launch recorded")

    monkeypatch.setattr(run_prepare, "visible_gpus", lambda: 8)
    monkeypatch.setattr(launch, "launch", fake_launch)
    result = rung("run", plan, "--gpus", 8, "--nodes", 2, "--node-rank", 1, "--main-address", "10.1.2.3",
                  "--main-port", 29600)
    assert result.exit_code == 2
    assert {k: launched[k] for k in ("gpus", "nodes", "node_rank", "main_address", "main_port")} == {
        "gpus": 8, "nodes": 2, "node_rank": 1, "main_address": "10.1.2.3", "main_port": 29600}
    assert launched["corpus"] == [str(corpus)] and launched["out_dir"] == str(tmp_path / "cpt")
    assert launched["pipeline"] == "cpt"


@pytest.mark.parametrize("argv, expected", [
    # --gpus is processes per machine, 1 by default (as for `rung train`): two machines need the main one's address
    (["--nodes", "2"], ["--nodes 2: give --main-address"]),
    (["--nodes", "2", "--gpus", "1", "--main-address", "h", "--node-rank", "2"], ["--node-rank 2: must be between 0 and 1"]),
    (["--nodes", "0"], ["Invalid value for '--nodes': must be an integer at least 1, got 0"]),
    (["--gpus", "0"], ["Invalid value for '--gpus': must be an integer at least 1, got 0"]),
])
def test_bad_cluster_flags_fail_before_any_work(rung, tmp_path, monkeypatch, argv, expected):

    monkeypatch.setattr(run_prepare, "visible_gpus", lambda: 8)
    plan = tmp_path / "plan.yaml"
    plan.write_text("version: 1\nname: x\nroute: bigger_model\nsteps:\n- {id: pick, engine: bigger_model}\n")
    result = rung("run", plan, *argv)
    assert result.exit_code == 2
    for text in expected:
        assert text in result.output
    assert not (tmp_path / "run_state.json").exists()
