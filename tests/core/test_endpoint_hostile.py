"""core/endpoint.py against a real server on 127.0.0.1 that misbehaves (tests/misbehaving_server.py): each case
is one RungError line, bounded by --timeout, with no key in it; and the secrets module on its own."""

from __future__ import annotations

import _thread
import base64
import json
import threading
import time
from urllib.parse import quote

import pytest

from ..misbehaving_server import MisbehavingServer
from rung.core.endpoint import EndpointChat, EndpointSettings
from rung.core.errors import RungError
from rung.core.secrets import forms, key_problem, scrub

SECRET = "sk-hostile-" + "9d8c7b6a5f4e3d2c1b0a"
ROW = [[{"role": "user", "content": "hello"}]]


@pytest.fixture(autouse=True)
def no_ambient_endpoint(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def ask(server: MisbehavingServer, *, timeout_s: float = 1.0, retries: int = 0) -> tuple[str, float]:
    chat = EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, timeout_s=timeout_s,
                                         max_retries=retries))
    started = time.monotonic()
    with pytest.raises(RungError) as error:
        chat.chat(ROW, max_new_tokens=4)
    message = str(error.value)
    assert "\n" not in message and error.value.__cause__ is None
    return message, time.monotonic() - started


def test_a_server_that_never_answers_fails_within_the_timeout_times_attempts():
    with MisbehavingServer("silent") as server:
        message, seconds = ask(server, timeout_s=0.5, retries=1)
    assert "did not answer within 0.5 s after 1 retries" in message and "--timeout" in message
    assert server.requests == 2 and seconds < 10  # the failure mode is 30 s or more


def test_a_trickling_body_is_cut_at_the_deadline():
    with MisbehavingServer("trickle") as server:  # a valid body, one byte per 0.2 s: ~50 s in all
        message, seconds = ask(server, timeout_s=1.0)
    assert "was still sending its answer after 1 s" in message and seconds < 10  # the failure mode is 30 s or more


def test_an_endless_event_stream_is_cut_at_the_deadline():
    with MisbehavingServer("sse") as server:
        message, seconds = ask(server, timeout_s=1.0)
    assert "1 s" in message and seconds < 10  # the failure mode is 30 s or more


@pytest.mark.parametrize("mode", ["huge", "huge_chunked"])
def test_a_huge_body_is_refused_without_reading_it(mode):
    with MisbehavingServer(mode) as server:
        message, seconds = ask(server, timeout_s=5.0)
    assert "too large" in message


@pytest.mark.parametrize("body, fragment", [
    ('{"choices": "x"}', '"choices" is a string, not a list'),
    ('{"choices": []}', '"choices" is empty'),
    ('{"choices": ["x"]}', '"choices[0]" is a string, not an object'),
    ('{"choices": [{"message": "x"}]}', '"choices[0].message" is a string, not an object'),
    ('{"choices": [{"message": {"content": 5}}]}', '"choices[0].message.content" is a number'),
    ('{"choices": [{"message": {"content": [1, 2]}}]}', '"choices[0].message.content[0]" is not a text part'),
    ('["a list"]', "the body is a list, not a JSON object"),
    ("null", "the body is null"),
    ("not json at all", "not a chat completion"),
    ("[" * 100000, "not a chat completion"),
])
def test_wrong_json_types_are_one_line(body, fragment):
    with MisbehavingServer("json:" + body) as server:
        message, _ = ask(server)
    assert fragment in message, message


@pytest.mark.parametrize("mode", ["garbage", "hangup", "short_body"])
def test_a_server_breaking_http_is_one_line(mode):
    with MisbehavingServer(mode) as server:
        message, seconds = ask(server)
    assert message.startswith(f"{server.base_url} broke the HTTP protocol")


def test_list_content_and_odd_usage_are_read_not_crashed_on():
    parts = {"choices": [{"message": {"content": [{"type": "text", "text": "he"}, {"type": "text", "text": "llo"}]}}],
             "usage": {"prompt_tokens": "many", "completion_tokens": -1}}
    with MisbehavingServer("json:" + json.dumps(parts)) as server:
        chat = EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, timeout_s=2, max_retries=0))
        assert chat.chat(ROW, max_new_tokens=4) == ["hello"]
    assert chat.usage["responses_without_usage"] == 1 and chat.usage["prompt_tokens"] == 0


@pytest.mark.parametrize("key", [SECRET + "\n", " " + SECRET, SECRET[:8] + "\t" + SECRET[8:], SECRET + "\x1b",
                                 SECRET + "é"])
def test_a_key_with_whitespace_or_control_characters_is_refused_before_any_request(monkeypatch, key):
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with MisbehavingServer("ok") as server:
        message, _ = ask(server)
    assert server.requests == 0
    assert message.startswith("OPENAI_API_KEY holds")
    assert SECRET not in message and SECRET[:12] not in message


def test_a_401_that_echoes_the_header_does_not_print_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with MisbehavingServer("echo401") as server:
        message, _ = ask(server)
    assert server.authorizations == [f"Bearer {SECRET}"]
    assert "401 unauthorized" in message and SECRET not in message


def test_an_answer_echoing_the_key_is_scrubbed_before_it_is_stored(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with MisbehavingServer("reply_auth") as server:
        chat = EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, timeout_s=2, max_retries=0))
        assert chat.chat(ROW, max_new_tokens=4) == ["Bearer ***"]


def test_ctrl_c_stops_a_chat_within_a_second():
    with MisbehavingServer("silent") as server:
        chat = EndpointChat(EndpointSettings(model="alpha", api_base=server.base_url, timeout_s=60, max_retries=4))
        threading.Timer(0.3, _thread.interrupt_main).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            chat.chat(ROW * 4, max_new_tokens=4)
        assert time.monotonic() - started < 10  # the failure mode: 5 attempts x 60 s


@pytest.mark.parametrize("api_base", ["http://127.0.0.1:8000/v1\nX-Evil: 1", "http://127.0.0.1:8000/v1\r\nHost: evil",
                                      "http://127.0.0.1:80 00/v1", "http://127.0.0.1:8000/\x00v1"])
def test_an_api_base_with_control_characters_is_refused(api_base):
    with pytest.raises(RungError, match="whitespace or control characters"):
        EndpointSettings(model="alpha", api_base=api_base)


@pytest.mark.parametrize("field, value", [("timeout_s", float("nan")), ("timeout_s", float("inf")),
                                          ("timeout_s", -1), ("timeout_s", 1e9), ("max_retries", 10**6),
                                          ("max_retries", -1), ("concurrency", 10**6), ("concurrency", True)])
def test_settings_refuse_nan_inf_negative_and_huge(field, value):
    with pytest.raises(RungError, match=field):
        EndpointSettings(model="alpha", api_base="http://127.0.0.1:1/v1", **{field: value})


# ------------------------------------------------------------------------------------------- secrets


def test_scrub_removes_every_form_of_the_key():
    basic = base64.b64encode(f"user:{SECRET}".encode()).decode()
    texts = [f"raw {SECRET}", f"Illegal header value b'Bearer {SECRET}\\n'", repr(SECRET + "\n"),
             f"url {quote(SECRET + '/+=', safe='')}", f"Authorization: Basic {basic}",
             "b64 " + base64.b64encode(SECRET.encode()).decode(),
             "urlsafe " + base64.urlsafe_b64encode(b"x:" + SECRET.encode()).decode()]
    for text in texts:
        cleaned = scrub(text, SECRET, SECRET + "/+=")
        assert SECRET not in cleaned and SECRET[3:15] not in cleaned and "***" in cleaned, (text, cleaned)
        assert basic not in cleaned
    assert scrub("keep EMPTY and ok words", "EMPTY"[:3]) == "keep EMPTY and ok words"  # too short to mask
    assert all(len(f) >= 4 for f in forms(SECRET))


def test_key_problem_names_the_variable_never_the_value():
    assert key_problem("MY_KEY", SECRET) is None and key_problem("MY_KEY", "") is None
    for bad in (SECRET + "\n", SECRET + "\r\n", "\u200b" + SECRET, SECRET + "\x7f"):
        problem = key_problem("MY_KEY", bad)
        assert problem and problem.startswith("MY_KEY holds") and SECRET not in problem


@pytest.mark.parametrize("value, says", [(None, "OPENAI_API_KEY is not set"), ("", "OPENAI_API_KEY is set but empty")])
def test_a_remote_endpoint_with_the_key_unset_or_empty_names_the_variable(monkeypatch, value, says):
    if value is not None:
        monkeypatch.setenv("OPENAI_API_KEY", value)
    settings = EndpointSettings(model="alpha", api_base="https://api.example.invalid/v1")
    with pytest.raises(RungError, match=says):
        EndpointChat(settings).chat(ROW, max_new_tokens=4)


def test_credentials_in_the_url_never_reach_a_message(monkeypatch):
    password, token = "hunter2-" + "p4ssw0rd", "qtok-" + "5e6f7a8b9c"
    with MisbehavingServer('json:{"choices": "x"}') as server:
        url = server.base_url.replace("http://", f"http://user:{password}@") + f"?api-key={token}"
        chat = EndpointChat(EndpointSettings(model="alpha", api_base=url, timeout_s=2, max_retries=0))
        with pytest.raises(RungError) as error:
            chat.chat(ROW, max_new_tokens=4)
    assert '"choices" is a string' in error.value.message
    assert password not in error.value.message and token not in error.value.message

