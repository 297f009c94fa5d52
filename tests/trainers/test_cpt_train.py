"""CPT end to end on CPU with builtin:tiny and the example corpus: one process, two processes (gloo) through the
same accelerate launcher, SIGKILL then --resume, the forgetting monitor against a direct evaluation, LoRA
with trainable embeddings through the engine entry, and the cached stage-1 base model."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rung.core.settings import CPTSettings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "domain_corpus" / "corpus"

# 12 steps × 4 blocks × 64 tokens; evaluate and checkpoint every 6 steps
SETTINGS = dict(max_length=64, per_device_train_batch_size=4, max_steps=12, eval_steps=6, save_steps=6,
                logging_steps=2, learning_rate=2e-3, warmup_ratio=0.1, max_eval_samples=8)


def _weights(model_dir: Path):
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model_dir):
    from rung.trainers.cpt import train_cpt

    out = tmp_path_factory.mktemp("cpt") / "single"
    settings = CPTSettings(model_name_or_path="builtin:tiny", **SETTINGS)  # tiny_model_dir: built once
    return settings, out, train_cpt(settings, [EXAMPLE], out)


def test_single_process_run(single):
    from transformers import AutoModelForCausalLM

    settings, out, result = single
    assert result["global_step"] == 12 and result["processes"] == 1
    assert result["final_loss"] < result["first_loss"] - 0.5
    for name in ("metrics.json", "report.md", "loss.png", "resolved_config.yaml", "data_plan.json"):
        assert (out / name).stat().st_size > 0, name
    model = AutoModelForCausalLM.from_pretrained(result["model_dir"])
    assert model.config.num_hidden_layers == 4
    table = result["forgetting"]
    assert [row["step"] for row in table] == [0, 6, 12]
    assert table[-1]["domain_ppl"] < table[0]["domain_ppl"] / 2  # the domain is learned
    report = (out / "report.md").read_text()
    assert "| 0 (before) |" in report and "| 12 (after) |" in report and "general ppl" in report
    ratio = max(r["general_ppl"] for r in table[1:]) / table[0]["general_ppl"]
    assert bool(result["warnings"]) == (ratio > settings.general_ppl_warn_ratio)
    throughput = result["throughput"]
    assert throughput["tokens_per_second"] > 0 and throughput["mfu"] is None and "CPU" in throughput["mfu_note"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert any("tokens_per_second" in record for record in metrics["log_history"])


def test_forgetting_monitor_equals_a_direct_evaluation(single, tiny_model_dir):
    """The monitor's perplexities (Trainer evaluation) equal a hand-written loop over the same blocks."""
    import torch
    from transformers import AutoModelForCausalLM

    from rung.trainers import forgetting
    from rung.trainers.cpt import held_out_blocks
    from rung.core.models import load_tokenizer

    settings, out, result = single
    tokenizer = load_tokenizer(str(tiny_model_dir))
    plan = json.loads((out / "data_plan.json").read_text())
    slices = {"domain": held_out_blocks(plan, tokenizer, settings.max_eval_samples),
              "general": forgetting.general_blocks(tokenizer, 64, settings.max_eval_samples, plan["separator_id"])}
    assert len(slices["domain"]) == len(slices["general"]) == 8

    def direct(model, blocks):
        total = count = 0.0
        with torch.no_grad():
            for block in blocks:
                ids = torch.tensor([block])
                logits = model(input_ids=ids).logits[0, :-1]
                total += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
                count += len(block) - 1
        return math.exp(total / count)

    for row, model_dir in ((result["forgetting"][0], tiny_model_dir), (result["forgetting"][-1], result["model_dir"])):
        model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
        for name, blocks in slices.items():
            assert row[f"{name}_ppl"] == pytest.approx(direct(model, blocks), rel=1e-4), (row["step"], name)
            assert forgetting.perplexity(model, blocks) == pytest.approx(row[f"{name}_ppl"], rel=1e-4)


def test_warning_when_general_perplexity_rises():
    from rung.trainers.forgetting import table_markdown, warnings_for

    table = [{"step": 0, "domain_ppl": 50.0, "general_ppl": 20.0}, {"step": 10, "domain_ppl": 30.0, "general_ppl": 23.0},
             {"step": 20, "domain_ppl": 20.0, "general_ppl": 26.0}]
    assert warnings_for(table, 1.5) == []
    (line,) = warnings_for(table, 1.2)
    assert "1.30x" in line and "step 20" in line and "general_ppl_warn_ratio=1.2" in line
    assert "| 20 (after) | 20.00 | 26.00 | 1.30x |" in table_markdown(table)


def test_two_processes_through_the_launcher_match_one(single, rung, tmp_path):
    """2 CPU processes (gloo) × 2 blocks = the single run's 4-block global batch: same steps, same weights."""
    from transformers import AutoModelForCausalLM

    settings, _, one = single
    out = tmp_path / "two"
    result = rung("train", "cpt", "--corpus", EXAMPLE, "--out", out, "--base-model", settings.model_name_or_path,
                  "--gpus", "2", "--cpu", "--main-port", "0", "--batch-size", "2", "--max-steps", "12",
                  "--max-length", "64", "--eval-steps", "6", "--save-steps", "6", "--logging-steps", "2",
                  "--learning-rate", "2e-3", "--set", "warmup_ratio=0.1", "--max-eval-samples", "8")
    assert result.exit_code == 0, result.output
    ranks = [json.loads((out / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["global_step"] for r in ranks] == [12, 12] == [one["global_step"]] * 2  # both ranks finished
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["global_batch_blocks"] == 4
    assert metrics["final_loss"] < metrics["first_loss"] - 0.5
    AutoModelForCausalLM.from_pretrained(str(out / "model"))
    # data parallel with the same global batch is the same optimisation, up to float summation order
    assert _max_diff(_weights(out / "model"), _weights(one["model_dir"])) < 1e-4
    assert yaml_load(out / "accelerate_config.yaml")["use_cpu"] is True


def yaml_load(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


def test_sigkill_then_resume_continues_at_the_checkpoint_without_rereading(tmp_path, tiny_model_dir):
    from rung.trainers.cpt import cpt_job, last_checkpoint, train_cpt
    from rung.trainers.jobs import write_job

    settings = CPTSettings(model_name_or_path=str(tiny_model_dir), max_length=32, per_device_train_batch_size=4,
                           max_steps=60, save_steps=3, save_total_limit=None, eval_strategy="no",
                           logging_steps=5, learning_rate=2e-3, max_eval_samples=4)
    out = tmp_path / "killed"
    job = write_job(out, "cpt", settings, resume=False, **cpt_job(settings, [EXAMPLE]))
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen([sys.executable, "-m", "rung.trainers.worker", "--job", str(job)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        found = last_checkpoint(out)
        if found is not None and int(found.name.split("-")[1]) >= 6:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    checkpoint = last_checkpoint(out)
    step = int(checkpoint.name.split("-")[1])
    assert 6 <= step < 60 and not (out / "model").exists()

    resumed = train_cpt(settings, [EXAMPLE], out, resume=True)
    assert resumed["resumed_from"] == checkpoint.name and resumed["global_step"] == 60
    # the stream opened at the checkpoint's data position: the first block read is the first unconsumed one
    assert resumed["data"]["first_block_read"] == step * 4 == resumed["blocks_seen"][0]
    assert resumed["blocks_seen"][:(60 - step) * 4] == list(range(step * 4, 240))
    # and the result is the uninterrupted run's, bit for bit up to float noise
    reference = train_cpt(settings, [EXAMPLE], tmp_path / "reference")
    assert reference["blocks_seen"][:240] == list(range(240))
    assert _max_diff(_weights(out / "model"), _weights(reference["model_dir"])) < 1e-5
    assert resumed["forgetting"][0]["step"] == 0  # the "before" baseline survived the kill
    assert resumed["forgetting"][0]["general_ppl"] == pytest.approx(reference["forgetting"][0]["general_ppl"])


def test_lora_with_trainable_embeddings_through_the_engine(tmp_path, tiny_model_dir):
    from rung.core.protocol import StepContext
    from rung.engines.cpt import run_step

    plan = {"base_model": str(tiny_model_dir), "data": {"corpus": "corpus"}}
    step = {"id": "cpt", "engine": "cpt", "settings": {
        "adapter": "lora", "lora_modules_to_save": ["embed_tokens", "lm_head"], "max_length": 32,
        "per_device_train_batch_size": 4, "max_steps": 4, "learning_rate": 5e-3, "eval_strategy": "no",
        "save_steps": 100, "max_eval_samples": 4}}
    ctx = StepContext(plan=plan, plan_dir=EXAMPLE.parent, run_dir=tmp_path / "cpt")
    result = run_step(step, ctx)
    model_dir = Path(result.outputs["model_dir"])
    assert (tmp_path / "cpt" / "adapter" / "adapter_config.json").exists()
    assert (model_dir / "config.json").exists() and not (model_dir / "adapter_config.json").exists()  # merged
    base, merged = _weights(tiny_model_dir), _weights(model_dir)
    key = "model.embed_tokens.weight"
    assert _max_diff({key: merged[key]}, {key: base[key]}) > 0  # the embeddings trained too
    assert json.loads((model_dir / "config.json").read_text())["tie_word_embeddings"] is True  # still one matrix
    assert result.metrics["global_step"] == 4 and result.metrics["general_ppl_before"] > 0
    assert "Forgetting monitor" in result.summary


def test_pretrained_tiny_is_built_once_and_cached(tmp_path, monkeypatch, tiny_model_dir):
    # Patched where pretrained_tiny_path reads them: rung.trainers.cpt.base_model, not the package's re-exports
    # (patching those ran the full ~90 s pretraining and left the "trained again" guard unable to fire).
    import rung.core.models as models
    import rung.trainers.cpt.base_model as base_model

    monkeypatch.setattr(models, "cache_root", lambda: tmp_path)
    monkeypatch.setattr(models, "builtin_tiny_path", lambda: tiny_model_dir)
    quick = {**base_model.TINY_BASE_SPEC, "settings": {**base_model.TINY_BASE_SPEC["settings"], "max_steps": 2}}
    monkeypatch.setattr(base_model, "TINY_BASE_SPEC", quick)
    trained: list[int] = []
    real_train = base_model.train_cpt

    def counted_train(*args, **kwargs):
        trained.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(base_model, "train_cpt", counted_train)
    path = base_model.pretrained_tiny_path()
    assert trained == [1]  # the quick spec trained, once
    assert path.parent == tmp_path and path.name.startswith("builtin-tiny-base-")
    assert (path / "config.json").exists() and (path / "tokenizer.json").exists()
    assert "builtin:tiny-base" in (path / "RUNG_BUILTIN.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the staging folder is gone

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(base_model, "train_cpt", no_training)
    assert base_model.pretrained_tiny_path() == path
