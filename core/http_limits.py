"""Bounds on what an endpoint may send back: a body size and a wall-clock deadline per attempt.

httpx's read timeout restarts with every chunk received, so a server that trickles one byte a second, or
streams events forever, never trips it, and a 1 GB reply is read whole into memory. LimitedTransport wraps
httpx's own transport: the response body is counted as it arrives and abandoned past MAX_REPLY_BYTES or past
the attempt's deadline (timeout_s after the request was sent). The failures are httpx exceptions, so the
openai client treats them as it treats a timeout or a broken connection (retried up to max_retries), and
core/endpoint.py names them in one line.

The headers are bounded by httpx's own read timeout and h11's header size limit (64 KiB).
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import httpx

MAX_REPLY_BYTES = 8 * 1024 * 1024   # a 32,768-token answer is ~150 KB of JSON: 8 MiB is far past any real one
CONNECT_TIMEOUT_S = 10.0            # a host that drops SYNs fails here, whatever the read timeout


class ReplyTooLarge(httpx.ReadError):
    """The body passed MAX_REPLY_BYTES (or said it would, in Content-Length)."""


class ReplyTooSlow(httpx.ReadTimeout):
    """The body was still arriving when the attempt's deadline passed (a trickle, an endless stream)."""


class _BoundedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, *, max_bytes: int, deadline: float, request: httpx.Request):
        self.inner, self.max_bytes, self.deadline, self.request = inner, max_bytes, deadline, request

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self.inner:
            received += len(chunk)
            if received > self.max_bytes:
                raise ReplyTooLarge(f"reply larger than {self.max_bytes:,} bytes", request=self.request)
            if time.monotonic() > self.deadline:
                raise ReplyTooSlow("reply still arriving at the deadline", request=self.request)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class LimitedTransport(httpx.BaseTransport):
    """httpx.HTTPTransport with a body-size limit and a per-attempt deadline on the body."""

    def __init__(self, *, total_s: float, max_bytes: int = MAX_REPLY_BYTES, inner: httpx.BaseTransport | None = None):
        self.total_s, self.max_bytes = float(total_s), int(max_bytes)
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.total_s
        response = self.inner.handle_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response.close()
            raise ReplyTooLarge(f"reply of {int(declared):,} bytes declared, over {self.max_bytes:,}",
                                request=request)
        response.stream = _BoundedStream(response.stream, max_bytes=self.max_bytes, deadline=deadline,
                                         request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def bounded_client(timeout_s: float, max_bytes: int = MAX_REPLY_BYTES) -> Any:
    """An httpx.Client for the openai client: read timeout timeout_s, connect at most CONNECT_TIMEOUT_S, and
    the body bounded in size and in time (timeout_s per attempt, however slowly it trickles)."""
    timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    return httpx.Client(transport=LimitedTransport(total_s=timeout_s, max_bytes=max_bytes), timeout=timeout,
                        follow_redirects=False)
