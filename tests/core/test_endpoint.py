"""core/endpoint.py against real servers: `transformers serve` on builtin:tiny, and a minimal OpenAI-compatible
server on the standard library's http.server (a real socket on 127.0.0.1) for the cases a real model server
cannot be made to show on demand: 503s, 401s, 404s, slow answers. No part of the openai client is patched."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rung.core.endpoint import EndpointChat, EndpointSettings, is_endpoint, parse_endpoint_spec
from rung.core.errors import RungError


class ChatServer:
    """POST /v1/chat/completions and GET /v1/models, with knobs: the first `fail_first` requests get
    `fail_status`; each request sleeps `delay` s; `required_key` answers 401 (echoing the key it got, as
    OpenAI's own 401 does) to any other; an unknown model gets OpenAI's 404. It counts requests and the most
    in flight at once. Each answer is "answer to: <last message>", so order can be checked. `echo_key` puts the
    key it got into its failure messages, as careless servers and proxies do."""

    def __init__(self, *, fail_first: int = 0, fail_status: int = 503, delay: float = 0.0,
                 required_key: str | None = None, models: tuple[str, ...] = ("alpha", "beta"), echo_key: bool = False):
        self.fail_first, self.fail_status, self.delay, self.echo_key = fail_first, fail_status, delay, echo_key
        self.required_key, self.models = required_key, models
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def send_json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    self.send_json(200, {"object": "list", "data": [
                        {"id": name, "object": "model", "created": 0, "owned_by": "test"} for name in server.models]})
                else:
                    self.send_json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests += 1
                    number = server.requests
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.authorizations.append(self.headers.get("Authorization", ""))
                try:
                    time.sleep(server.delay)
                    self.answer(number, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def answer(self, number: int, body: dict) -> None:
                if self.path != "/v1/chat/completions":
                    return self.send_json(404, {"error": {"message": f"no route {self.path}"}})
                if server.required_key and self.headers.get("Authorization") != f"Bearer {server.required_key}":
                    sent = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    return self.send_json(401, {"error": {"message": f"Incorrect API key provided: {sent}",
                                                          "type": "invalid_request_error"}})
                if number <= server.fail_first:
                    echo = f" (key {self.headers.get('Authorization', '')})" if server.echo_key else ""
                    return self.send_json(server.fail_status, {"error": {"message": f"overloaded, try again{echo}"}})
                if body["model"] not in server.models:
                    return self.send_json(404, {"error": {"message": f"The model `{body['model']}` does not exist",
                                                          "code": "model_not_found"}})
                prompt = body["messages"][-1]["content"]
                self.send_json(200, {
                    "id": f"chatcmpl-{number}", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": f"answer to: {prompt}"}}],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 3,
                              "total_tokens": len(prompt.split()) + 3},
                })

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "ChatServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def conversations(n: int) -> list[list[dict]]:
    return [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {i}"}]
            for i in range(n)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def no_ambient_endpoint(monkeypatch):
    """The developer's own endpoint settings never leak into a test."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


# ------------------------------------------------------------------------------------------- specs, settings


def test_endpoint_specs():
    assert parse_endpoint_spec("openai:gpt-4o-mini") == "gpt-4o-mini"
    assert parse_endpoint_spec("openai:llama3:8b") == "llama3:8b"  # Ollama's tags keep their colon
    assert parse_endpoint_spec("openai:/models/qwen") == "/models/qwen"  # transformers serve names folders
    for other in ("builtin:tiny", "Qwen/Qwen2.5-0.5B", "./out/sft", "openai", "OPENAI:x"):
        assert parse_endpoint_spec(other) is None and not is_endpoint(other)
    assert is_endpoint("openai:gpt-4o-mini")
    with pytest.raises(RungError, match="names no model"):
        parse_endpoint_spec("openai: ")


def test_settings_defaults_and_base_url_from_env(monkeypatch):
    with pytest.raises(RungError) as error:
        EndpointSettings(model="m")
    assert "api_base" in str(error.value) and "OPENAI_BASE_URL" in str(error.value)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1/")
    settings = EndpointSettings(model="m")
    assert settings.api_base == "http://127.0.0.1:8000/v1"
    assert (settings.api_key_env, settings.timeout_s, settings.max_retries, settings.concurrency) == (
        "OPENAI_API_KEY", 30.0, 2, 4)
    assert settings.api_key() == "EMPTY"  # loopback, variable unset: a local server needs no key


def test_settings_report_every_problem_at_once():
    with pytest.raises(RungError) as error:
        EndpointSettings(model="", api_base="ftp://host", timeout_s=0, max_retries=-1, concurrency=0,
                         usd_per_million_input=-1.0)
    message = str(error.value)
    for field in ("model:", "api_base:", "timeout_s:", "max_retries:", "concurrency:", "usd_per_million_input:"):
        assert field in message, field


def test_remote_endpoint_without_key_names_the_variable():
    settings = EndpointSettings(model="gpt-4o-mini", api_base="https://api.example.invalid/v1",
                                api_key_env="MY_PROVIDER_KEY")
    with pytest.raises(RungError, match=r"MY_PROVIDER_KEY is not set.*api\.example\.invalid"):
        EndpointChat(settings).chat(conversations(1), max_new_tokens=4)


def test_importing_the_module_does_not_import_openai():
    code = "import sys, rung.core.endpoint; print(sorted(m for m in ('openai', 'httpx', 'httpx2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------- (a) transformers serve


@pytest.mark.slow
def test_transformers_serve_answers_in_order_with_usage(transformers_server):
    base_url, model = transformers_server
    chat = EndpointChat(EndpointSettings(model=model, api_base=base_url, concurrency=3,
                                         usd_per_million_input=1.0, usd_per_million_output=2.0))
    # Prompts random-weight builtin:tiny answers differently under greedy decoding, so the order check bites
    # (most prompts get the same "samesame..." from it).
    prompts = [[{"role": "user", "content": text}] for text in ("class", "x = 1", "lambda")]
    answers = chat.chat(prompts, max_new_tokens=8)
    assert len(answers) == 3 and all(isinstance(a, str) and a for a in answers)
    solo = [chat.chat([p], max_new_tokens=8)[0] for p in prompts]  # each alone: same answer, same slot
    assert solo == answers
    assert len(set(answers)) == 3, f"builtin:tiny changed? pick prompts it answers differently: {answers}"
    usage = chat.usage
    assert usage["requests"] == 6 and usage["retries"] == 0 and usage["responses_without_usage"] == 0
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 6 * 8
    assert usage["seconds"] > 0
    expected = usage["prompt_tokens"] / 1e6 * 1.0 + usage["completion_tokens"] / 1e6 * 2.0
    assert usage["cost_usd"] == pytest.approx(expected)

    # A model the server does not serve: one line naming what it does serve.
    wrong = EndpointChat(EndpointSettings(model="nope/missing", api_base=base_url, max_retries=0))
    with pytest.raises(RungError) as error:
        wrong.chat(prompts[:1], max_new_tokens=4)
    assert "'nope/missing' not found" in str(error.value) and model in str(error.value)


# --------------------------------------------------------------------------- (b)-(e) the stdlib chat server


def test_503_is_retried_by_the_client():
    with ChatServer(fail_first=2) as server:
        chat = EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, max_retries=4))
        assert chat.chat(conversations(1), max_new_tokens=4) == ["answer to: question 0"]
    assert server.requests == 3
    assert chat.usage["retries"] == 2 and chat.usage["requests"] == 1


def test_503_until_retries_run_out_is_one_line():
    with ChatServer(fail_first=100) as server:
        chat = EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, max_retries=1))
        with pytest.raises(RungError) as error:
            chat.chat(conversations(1), max_new_tokens=4)
    assert server.requests == 2
    assert str(error.value) == f"{server.base_url} failed with 503 after 1 retries: overloaded, try again"


def test_dead_port_is_one_clean_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    chat = EndpointChat(EndpointSettings(model="alpha", api_base=url, max_retries=1, timeout_s=2))
    start = time.monotonic()
    with pytest.raises(RungError) as error:
        chat.chat(conversations(2), max_new_tokens=4)
    assert time.monotonic() - start < 5
    assert str(error.value) == f"cannot reach {url}: connection refused — is the server running?"
    assert error.value.__cause__ is None and error.value.__context__ is None  # nothing chained


def test_unknown_model_lists_the_served_ones():
    with ChatServer(models=("llama3:8b", "qwen2.5:0.5b")) as server:
        chat = EndpointChat(EndpointSettings(model="llama3:7b", api_base=server.base_url, max_retries=0))
        with pytest.raises(RungError) as error:
            chat.chat(conversations(1), max_new_tokens=4)
        assert chat.models() == ["llama3:8b", "qwen2.5:0.5b"]
    assert str(error.value) == (f"model 'llama3:7b' not found at {server.base_url} (did you mean \"llama3:8b\"?); "
                                "the server lists: llama3:8b, qwen2.5:0.5b")


def test_slow_server_times_out_cleanly():
    with ChatServer(delay=1.5) as server:
        chat = EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, max_retries=0, timeout_s=0.3))
        with pytest.raises(RungError, match=r"did not answer within 0\.3 s \(no retries\)"):
            chat.chat(conversations(1), max_new_tokens=4)


def test_concurrency_bounds_requests_in_flight_and_keeps_order():
    with ChatServer(delay=0.2) as server:
        chat = EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, concurrency=2))
        start = time.monotonic()
        answers = chat.chat(conversations(6), max_new_tokens=4)
        elapsed = time.monotonic() - start
    assert answers == [f"answer to: question {i}" for i in range(6)]
    assert server.requests == 6 and server.max_in_flight == 2
    assert elapsed >= 0.6  # 6 requests, 2 at a time, 0.2 s each
    assert chat.usage["prompt_tokens"] == 12 and chat.usage["completion_tokens"] == 18
    assert "cost_usd" not in chat.usage  # no prices given


def test_the_api_key_appears_nowhere(monkeypatch, capsys, caplog):
    secret = "sk-rung-test-" + "7f3a9c1e5b2d8f4a6c0e"
    caplog.set_level(logging.DEBUG)  # the openai client's and httpx's own debug logs included
    messages: list[str] = []

    def record(error: BaseException) -> None:
        while error is not None:  # the whole chain, should anything be chained
            messages.append(str(error))
            messages.append(repr(error))
            error = error.__cause__ or error.__context__

    with ChatServer(required_key=secret) as server:
        settings = EndpointSettings(model="alpha", api_base=server.base_url, max_retries=0)
        monkeypatch.setenv("OPENAI_API_KEY", secret)  # after the settings: read when the request is made
        chat = EndpointChat(settings)
        assert chat.chat(conversations(1), max_new_tokens=4) == ["answer to: question 0"]
        assert server.authorizations == [f"Bearer {secret}"]
    # 401 from a server that echoes the key it got (OpenAI's own 401 does, partly masked)
    with ChatServer(required_key="sk-another-key") as server:
        chat401 = EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, max_retries=0))
        with pytest.raises(RungError) as error:
            chat401.chat(conversations(1), max_new_tokens=4)
        record(error.value)
        assert "401 unauthorized — check the key in OPENAI_API_KEY" in str(error.value)
    # a server that echoes the key in its error message: ours masks it
    with ChatServer(fail_first=1, fail_status=400, echo_key=True) as server:
        with pytest.raises(RungError) as error:
            EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, max_retries=0)).chat(
                conversations(1), max_new_tokens=4)
        record(error.value)
        assert str(error.value) == (f"{server.base_url} rejected the request (400): "
                                    "overloaded, try again (key Bearer ***)")
    # a dead server
    with pytest.raises(RungError) as error:
        EndpointChat(EndpointSettings(model="alpha", api_base=f"http://127.0.0.1:{free_port()}/v1",
                                      max_retries=0)).chat(conversations(1), max_new_tokens=4)
    record(error.value)
    # the key pasted where its variable's name belongs
    with pytest.raises(RungError) as error:
        EndpointSettings(model="alpha", api_base="http://127.0.0.1:1/v1", api_key_env=secret)
    record(error.value)
    assert "not the key itself" in str(error.value)

    public = settings.public()
    assert public["api_key_env"] == "OPENAI_API_KEY"
    captured = capsys.readouterr()
    places = {"stdout": captured.out, "stderr": captured.err, "logs": caplog.text, "public": json.dumps(public),
              "repr(settings)": repr(settings), "repr(chat)": repr(chat), "usage": json.dumps(chat.usage),
              "errors": "\n".join(messages)}
    assert caplog.records  # the logs were captured, so their check means something
    for where, text in places.items():
        assert secret not in text, where


def test_credentials_in_the_url_stay_out_of_reports():
    settings = EndpointSettings(model="m", api_base="https://user:hunter2@gateway.example/v1?api-key=hunter2")
    assert "hunter2" not in repr(settings) and "hunter2" not in json.dumps(settings.public())
    assert settings.public()["api_base"] == "https://***@gateway.example/v1?***"
