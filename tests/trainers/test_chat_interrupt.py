"""Ctrl-C during `rung chat`'s answer abandons that answer and keeps the chat; at the prompt it leaves."""

from __future__ import annotations

import _thread
import threading
import time

from ..misbehaving_server import MisbehavingServer
from rung.trainers.generate import chat_loop


def test_ctrl_c_during_an_endpoint_answer_returns_to_the_prompt_at_once(monkeypatch):
    from rung.core.generation import open_chat_model

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lines: list[str] = []
    typed = iter(["first question", "/quit"])
    with MisbehavingServer("silent") as server:
        model = open_chat_model("openai:alpha", api_base=server.base_url, timeout_s=60, max_retries=3)
        threading.Timer(0.3, _thread.interrupt_main).start()
        started = time.monotonic()
        chat_loop(lambda messages: model.chat([messages], max_new_tokens=8)[0], system=None,
                  read=lambda prompt: next(typed), echo=lines.append)
        assert time.monotonic() - started < 10  # the failure mode: 4 attempts x 60 s
    assert any("interrupted" in line for line in lines) and not any(line.startswith("model>") for line in lines)
