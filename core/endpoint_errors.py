"""Endpoint failures in words (core/endpoint.py): the server's own message, what lay under a lost connection."""

from __future__ import annotations


def detail(error) -> str:
    """The server's own words: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the status text."""
    body = getattr(error, "body", None)
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        message = message or body.get("detail") or body.get("message")
    elif isinstance(body, str):
        message = body
    return one_line(str(message or getattr(error, "message", "") or "no details"))


def connection_reason(error: BaseException) -> str:
    """What lay under a connection error, in words: connection refused, host not found, ..."""
    import socket
    import ssl

    from rung.core.http_limits import ReplyTooLarge

    seen = set()
    cause: BaseException | None = error
    last = None
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ReplyTooLarge):
            return f"the answer was too large ({cause})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause})"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the server"
        last = cause
        cause = cause.__cause__ or cause.__context__
    return one_line(str(last)) if last is not None and str(last) else "connection failed"


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def caused_by(error: BaseException, kind: type) -> BaseException | None:
    """The first exception of `kind` in error's cause/context chain, or None."""
    seen = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, kind):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None
