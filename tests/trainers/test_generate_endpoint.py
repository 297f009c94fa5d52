"""`rung generate` and `rung chat` with openai:NAME: the same commands, answered by a real endpoint."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_generate_and_chat_through_a_real_server(rung, transformers_server):
    base_url, name = transformers_server
    result = rung("generate", f"openai:{name}", "--prompt", "Hello", "--api-base", base_url, "--max-new-tokens", "4")
    assert result.exit_code == 0, result.output
    assert result.output.strip()  # the server's answer, one line
    chat = rung("chat", f"openai:{name}", "--api-base", base_url, "--max-new-tokens", "4",
                input="Hello\n/reset\nAgain\n/quit\n")
    assert chat.exit_code == 0, chat.output
    assert chat.output.count("model> ") == 2 and "(conversation cleared)" in chat.output


def test_generate_raw_is_for_local_models(rung):
    result = rung("generate", "openai:gpt-x", "--prompt", "hi", "--raw", "--api-base", "http://127.0.0.1:9/v1")
    assert result.exit_code == 2 and "--raw feeds plain text to a local model" in result.output
