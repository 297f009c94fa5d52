"""Models behind an OpenAI-compatible chat endpoint: OpenAI, vLLM, Ollama, llama.cpp's server, TGI,
`transformers serve`.

A model spec `openai:NAME` means "NAME at an OpenAI-compatible endpoint"; the rest of the address comes from
EndpointSettings (api_base, default $OPENAI_BASE_URL). Everything goes through the official `openai` client
(extra `rung[endpoint]`), imported inside the functions that call it, so importing this module costs nothing
and `rung advise` never loads it.

The client does the retrying (max_retries): 408, 409, 429, every 5xx, timeouts and connection errors, with
exponential backoff (0.5 s, 1 s, 2 s, 4 s, ... capped at 8 s, minus up to 25% jitter) or the server's
Retry-After when it gives one (up to 2 minutes). So the default max_retries=2 waits at most 0.5+1 = 1.5 s
before giving up on a dead server, and a server that accepts the connection and never answers costs
(max_retries + 1) x timeout_s: 3 x 30 s by default, 1 s with `--timeout 1 --retries 0`. Each attempt's body is
bounded in size and in time (core/http_limits.py); the body is checked for shape and types before use
(core/chat_reply.py).

The API key is read from the environment variable named by api_key_env when a request is made, checked
(core/secrets.py: no whitespace or control characters, refused by the variable's name), passed to the client
and to nothing else: it is in no field, repr, report, log line or error message of this module, in any form
(raw, escaped, URL-encoded, base64).

Requests run on daemon threads and the caller waits in short slices, so Ctrl-C stops a chat() at once: the
requests in flight are abandoned, never waited for.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rung.core.background import run_abandonable
from rung.core.endpoint_errors import caused_by, connection_reason, detail, one_line
from rung.core.errors import RungError, did_you_mean
from rung.core.secrets import key_problem, scrub

ENDPOINT_PREFIX = "openai:"
# What a local server gets as its key when the variable is unset: vLLM's documented placeholder. Servers
# started without a key (vLLM, llama.cpp, Ollama, transformers serve) accept any value; the client needs one.
LOCAL_PLACEHOLDER_KEY = "EMPTY"
INSTALL_HINT = 'the openai client is not installed: pip install "rung[endpoint]"'
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_TIMEOUT_S = 30.0   # per attempt: far past a real answer of a few hundred tokens, short of a stalled server
DEFAULT_RETRIES = 2
MAX_TIMEOUT_S = 3600.0
MAX_RETRIES = 20
MAX_CONCURRENCY = 256


def parse_endpoint_spec(spec: str) -> str | None:
    """NAME for `openai:NAME`, None for any other model spec. NAME keeps its own colons (Ollama's `llama3:8b`)."""
    if not isinstance(spec, str) or not spec.startswith(ENDPOINT_PREFIX):
        return None
    name = spec[len(ENDPOINT_PREFIX):].strip()
    if not name:
        raise RungError(f'model spec "{spec}" names no model: write {ENDPOINT_PREFIX}NAME, e.g. '
                        f"{ENDPOINT_PREFIX}gpt-4o-mini or {ENDPOINT_PREFIX}llama3:8b")
    return name


def is_endpoint(spec: str) -> bool:
    """True for `openai:NAME` specs (a model served over HTTP), False for builtin:, folders and hub ids."""
    return isinstance(spec, str) and spec.startswith(ENDPOINT_PREFIX)


def public_url(url: str) -> str:
    """The URL without credentials: user:password@ and query values (some gateways take keys there) go."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be credentials: the password, and every query value."""
    from urllib.parse import parse_qsl

    try:
        parts = urlsplit(url)
        return [v for v in [parts.password or ""] + [value for _, value in parse_qsl(parts.query)] if v]
    except ValueError:
        return []


def is_loopback(url: str) -> bool:
    """True when the URL's host is this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(repr=False)
class EndpointSettings:
    """Where the endpoint is and how to talk to it. Holds the NAME of the key's variable, never the key."""

    model: str
    api_base: str | None = None          # e.g. http://127.0.0.1:8000/v1; default $OPENAI_BASE_URL
    api_key_env: str = "OPENAI_API_KEY"  # read when a request is made
    timeout_s: float = DEFAULT_TIMEOUT_S  # per attempt, the whole body included
    max_retries: int = DEFAULT_RETRIES   # 429, 5xx, timeouts, connection errors; 1.5 s of backoff at most
    concurrency: int = 4                 # requests in flight at once
    usd_per_million_input: float | None = None
    usd_per_million_output: float | None = None

    def __post_init__(self) -> None:
        if self.api_base is None:
            self.api_base = os.environ.get("OPENAI_BASE_URL") or None
        problems = []
        if not isinstance(self.model, str) or not self.model.strip():
            problems.append("model: name the model the endpoint serves (the NAME in openai:NAME)")
        elif not self.model.isprintable() or len(self.model) > 512:
            problems.append("model: the name holds control characters or is over 512 characters")
        if self.api_base is None:
            problems.append("api_base: no endpoint URL; set api_base (e.g. http://127.0.0.1:8000/v1) or the "
                            "OPENAI_BASE_URL environment variable")
        elif not isinstance(self.api_base, str) or any(not c.isprintable() or c.isspace()
                                                       for c in self.api_base.strip()):
            problems.append("api_base: the URL holds whitespace or control characters (a pasted newline?); give "
                            "one URL such as http://127.0.0.1:8000/v1")
        else:
            self.api_base = str(self.api_base).strip().rstrip("/")
            try:
                parts = urlsplit(self.api_base)
                ok = parts.scheme in ("http", "https") and bool(parts.hostname)
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"api_base: {public_url(self.api_base)!r} is not an http(s) URL with a host, "
                                "e.g. http://127.0.0.1:8000/v1")
        if not isinstance(self.api_key_env, str) or not _ENV_NAME.fullmatch(self.api_key_env):
            # Never echo the value: the likeliest mistake is pasting the key itself here.
            problems.append("api_key_env: give the NAME of the environment variable that holds the key "
                            "(letters, digits and _, e.g. OPENAI_API_KEY), not the key itself")
        if not _number(self.timeout_s) or not 0 < self.timeout_s <= MAX_TIMEOUT_S:  # NaN fails both
            problems.append(f"timeout_s: must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, "
                            f"got {self.timeout_s!r}")
        if not _integer(self.max_retries) or not 0 <= self.max_retries <= MAX_RETRIES:
            problems.append(f"max_retries: must be a whole number from 0 to {MAX_RETRIES}, got {self.max_retries!r}")
        if not _integer(self.concurrency) or not 1 <= self.concurrency <= MAX_CONCURRENCY:
            problems.append(f"concurrency: must be a whole number from 1 to {MAX_CONCURRENCY}, "
                            f"got {self.concurrency!r}")
        for name in ("usd_per_million_input", "usd_per_million_output"):
            value = getattr(self, name)
            if value is not None and (not _number(value) or not math.isfinite(value) or value < 0):
                problems.append(f"{name}: must be a price >= 0 in US dollars, got {value!r}")
        if problems:
            raise RungError(["invalid endpoint settings:"] + [f"  {p}" for p in problems])

    def public(self) -> dict[str, Any]:
        """Every field, fit for a report or a resolved plan: api_base without credentials, no key."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["api_base"] = public_url(self.api_base)
        return data

    def __repr__(self) -> str:
        return "EndpointSettings(" + ", ".join(f"{k}={v!r}" for k, v in self.public().items()) + ")"

    @property
    def local(self) -> bool:
        return is_loopback(self.api_base)

    def api_key(self) -> str:
        """The key from $api_key_env now; a placeholder for a loopback server when the variable is unset."""
        key = os.environ.get(self.api_key_env, "")
        problem = key_problem(self.api_key_env, key)
        if problem:
            raise RungError(problem)
        if key:
            return key
        if self.local:
            return LOCAL_PLACEHOLDER_KEY
        if self.api_key_env in os.environ:
            raise RungError(f"{self.api_key_env} is set but empty: {public_url(self.api_base)} is not on this "
                            f"machine and needs an API key; export {self.api_key_env}=...")
        raise RungError(f"{self.api_key_env} is not set: {public_url(self.api_base)} is not on this machine and "
                        f"needs an API key; export {self.api_key_env}=... (or set api_key_env to the variable "
                        "that holds it)")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class EndpointChat:
    """Chat completions from one endpoint model, `concurrency` requests at a time, with usage for run reports."""

    def __init__(self, settings: EndpointSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._counts = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0,
                        "responses_without_usage": 0, "seconds": 0.0}

    def __repr__(self) -> str:
        return f"EndpointChat({self.settings!r})"

    @property
    def usage(self) -> dict[str, Any]:
        """Totals over every chat() call: requests answered, retries the client made, tokens the server
        reported (responses_without_usage counts answers that reported none), wall seconds, and cost_usd
        when a price is set (an unset price counts as 0)."""
        with self._lock:
            usage: dict[str, Any] = dict(self._counts)
        usage["seconds"] = round(usage["seconds"], 3)
        s = self.settings
        if s.usd_per_million_input is not None or s.usd_per_million_output is not None:
            # cost = tokens / 1e6 * USD per million tokens, input and output priced separately
            usage["cost_usd"] = round(usage["prompt_tokens"] / 1e6 * (s.usd_per_million_input or 0.0)
                                      + usage["completion_tokens"] / 1e6 * (s.usd_per_million_output or 0.0), 6)
        return usage

    def chat(self, conversations: list[list[dict]], *, max_new_tokens: int, temperature: float = 0.0,
             top_p: float | None = None) -> list[str]:
        """One answer per conversation (lists of {"role", "content"} messages), in input order."""
        if not _integer(max_new_tokens) or max_new_tokens < 1:
            raise RungError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        for index, conversation in enumerate(conversations):
            if not isinstance(conversation, list) or not conversation or not all(
                    isinstance(m, dict) and "role" in m and "content" in m for m in conversation):
                raise RungError(f"conversation {index}: expected a non-empty list of {{role, content}} messages")
        if not conversations:
            return []
        key = self.settings.api_key()
        client = self._client(key)
        request: dict[str, Any] = {"model": self.settings.model, "max_tokens": max_new_tokens,
                                   "temperature": temperature}
        if top_p is not None:
            request["top_p"] = top_p
        start = time.perf_counter()
        try:
            return run_abandonable([lambda c=c: self._one(client, key, c, request) for c in conversations],
                                   workers=min(self.settings.concurrency, len(conversations)))
        finally:
            client.close()
            with self._lock:
                self._counts["seconds"] += time.perf_counter() - start

    def models(self) -> list[str] | None:
        """The model ids the endpoint lists at /models, or None when it does not answer."""
        key = self.settings.api_key()
        client = self._client(key)
        try:
            return self._listed_models(client)
        finally:
            client.close()

    # ------------------------------------------------------------------------------------------ internals

    def _client(self, key: str):
        try:
            import httpx
            import openai
        except ImportError:
            raise RungError(INSTALL_HINT) from None
        from rung.core.http_limits import CONNECT_TIMEOUT_S, bounded_client

        timeout_s = float(self.settings.timeout_s)
        return openai.OpenAI(base_url=self.settings.api_base, api_key=key,
                             timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
                             max_retries=self.settings.max_retries, http_client=bounded_client(timeout_s))

    def _one(self, client, key: str, conversation: list[dict], request: dict[str, Any]) -> str:
        import openai

        from rung.core.chat_reply import ReplyShapeError, answer_text, usage_counts

        base = public_url(self.settings.api_base)
        problem = None
        try:
            raw = client.chat.completions.with_raw_response.create(messages=conversation, **request)
            body = json.loads(raw.http_response.content)
            text = answer_text(body)
        except openai.APIError as error:
            problem = self._explain(error, client)
        except ReplyShapeError as error:
            problem = f"{base} answered something that is not a chat completion rung can read: {error}"
        except (ValueError, RecursionError) as error:  # a 200 whose body is not JSON
            problem = f"{base} answered something that is not a chat completion: {one_line(str(error))}"
        except Exception as error:  # noqa: BLE001 - the client's internals (h11, httpx) raising on odd input
            problem = f"{base}: the request failed: {type(error).__name__}: {one_line(str(error))}"
        secret = key if key != LOCAL_PLACEHOLDER_KEY else None
        if problem is not None:
            # Raised outside the except block: the client's exception (its request, a server's echo of the key)
            # is neither the cause nor the context of ours, so no traceback or report can reach it. A library's
            # words may quote the full URL: its password and query values go too.
            problem = problem.replace(self.settings.api_base, base)
            raise RungError(scrub(problem, secret, *url_secrets(self.settings.api_base)))
        text = scrub(text, secret)  # a server echoing the key in an answer does not get it into answers.jsonl
        counts = usage_counts(body)
        with self._lock:
            self._counts["requests"] += 1
            self._counts["retries"] += int(getattr(raw, "retries_taken", 0) or 0)
            if counts is None:
                self._counts["responses_without_usage"] += 1
            else:
                self._counts["prompt_tokens"] += counts[0]
                self._counts["completion_tokens"] += counts[1]
        return text

    def _listed_models(self, client) -> list[str] | None:
        try:
            raw = client.with_options(max_retries=0, timeout=min(5.0, float(self.settings.timeout_s))
                                      ).models.with_raw_response.list()
            body = json.loads(raw.http_response.content)
        except Exception:  # noqa: BLE001 - a hint for an error message: any failure means "no list"
            return None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            return None
        return [str(m["id"]) for m in data if isinstance(m, dict) and isinstance(m.get("id"), (str, int))]

    def _explain(self, error, client) -> str:
        """One line for an openai error: what happened, where, and what to do."""
        import openai

        s = self.settings
        base = public_url(s.api_base)
        retried = f"after {s.max_retries} retries" if s.max_retries else "(no retries)"
        if isinstance(error, openai.APITimeoutError):
            from rung.core.http_limits import ReplyTooSlow

            what = ("was still sending its answer after" if caused_by(error, ReplyTooSlow) is not None
                    else "did not answer within")
            return (f"{base} {what} {s.timeout_s:g} s {retried} — is the server overloaded or stalled? Raise "
                    "--timeout (timeout_s) or lower --concurrency")
        if isinstance(error, openai.APIConnectionError):
            import httpx

            if caused_by(error, httpx.RemoteProtocolError) is not None:
                return (f"{base} broke the HTTP protocol: {connection_reason(error)} — is it an OpenAI-compatible "
                        "server?")
            return f"cannot reach {base}: {connection_reason(error)} — is the server running?"
        if not isinstance(error, openai.APIStatusError):
            return f"{base}: {one_line(str(error))}"
        status = error.status_code
        said = detail(error)
        if status == 401:
            if s.local and not os.environ.get(s.api_key_env):
                hint = f"{s.api_key_env} is not set, so no key was sent; export it"
            else:
                hint = f"check the key in {s.api_key_env}"
            return f"{base} refused the request: 401 unauthorized — {hint}"
        if status == 403:
            return (f"{base} refused the request: 403 forbidden ({said}) — the key in {s.api_key_env} may not "
                    f"use {s.model!r}")
        if status in (400, 404):
            listed = self._listed_models(client)
            if listed is not None and s.model not in listed:
                names = ", ".join(listed[:20]) + (f" (and {len(listed) - 20} more)" if len(listed) > 20 else "")
                return (f"model {s.model!r} not found at {base}{did_you_mean(s.model, listed)}; the server lists: "
                        f"{names or 'no models'}")
            if status == 404:
                where = "" if listed is not None else " (and /models did not answer)"
                return (f"{base}/chat/completions answered 404{where}: {said} — does api_base end in /v1, and "
                        f"does the server serve {s.model!r}?")
            return f"{base} rejected the request (400): {said}"
        if status == 429:
            return f"{base} is rate-limiting (429) {retried}: {said} — lower concurrency or try again later"
        if status >= 500:
            return f"{base} failed with {status} {retried}: {said}"
        return f"{base} answered {status}: {said}"
