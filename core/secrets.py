"""API keys: checked before any request, and scrubbed from every message in every form a library may print.

A key reaches error text in more shapes than its own: h11 and httpx quote a bad header as bytes
(`Illegal header value b'Bearer sk-...\\n'`), so the key appears escaped; a proxy may echo it URL-encoded;
a Basic header carries it inside base64 (`user:key`). `scrub` removes each of them. `key_problem` refuses a
key holding whitespace or control characters (what `export KEY=$(cat file)` gives when the file ends in a
newline) by the NAME of its variable, never by its value, so the library that would have quoted it never
sees it.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import quote, quote_plus

MASK = "***"
# Shorter "keys" are placeholders ("EMPTY", "x"); masking them would garble ordinary words in messages.
MIN_SECRET_CHARS = 4
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


def key_problem(variable: str, key: str) -> str | None:
    """Why the key in $variable cannot be sent, or None. The message names the variable, never the key."""
    if key == "":
        return None  # unset or empty: the caller decides (a local server needs none)
    if key != key.strip():
        return (f"{variable} holds leading or trailing whitespace (a newline from `$(cat file)`?): strip it, e.g. "
                f'export {variable}="$(tr -d \'[:space:]\' < FILE)"')
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        return f"{variable} holds whitespace or control characters inside the key: an API key is one printable word"
    if not key.isascii():
        return f"{variable} holds non-ASCII characters: HTTP headers carry ASCII keys only; check what was pasted"
    return None


def forms(secret: str) -> list[str]:
    """The secret as it may appear in text: raw, repr/escaped (str and bytes), URL-encoded, base64 of it alone
    and of `:secret` (a Basic header's user:password with an empty user)."""
    found = {secret}
    found.add(repr(secret)[1:-1])
    raw = secret.encode("utf-8", "backslashreplace")
    found.add(repr(raw)[2:-1])
    found.add(secret.encode("unicode_escape").decode("ascii"))
    found.add(quote(secret, safe=""))
    found.add(quote_plus(secret))
    for wrapped in (raw, b":" + raw):
        found.add(base64.b64encode(wrapped).decode().rstrip("="))
        found.add(base64.urlsafe_b64encode(wrapped).decode().rstrip("="))
    return sorted((f for f in found if len(f) >= MIN_SECRET_CHARS), key=len, reverse=True)


def _holds_secret(token: str, secrets: list[bytes]) -> bool:
    """Whether a base64-looking token decodes (standard or URL-safe alphabet) to bytes holding a secret."""
    padded = token + "=" * (-len(token) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            data = decode(padded)
        except (binascii.Error, ValueError):
            continue
        if any(s in data for s in secrets):
            return True
    return False


def scrub(text: str, *secrets: str | None) -> str:
    """text with every form of every secret (>= MIN_SECRET_CHARS characters) replaced by ***, including base64
    tokens that decode to anything holding one (`Basic dXNlcjpzay0uLi4=`, whatever the user part)."""
    given = [s for s in secrets if isinstance(s, str)]
    keys = list(dict.fromkeys(k for s in given for k in (s, s.strip()) if len(k) >= MIN_SECRET_CHARS))
    if not keys or not isinstance(text, str):
        return text
    for key in keys:
        for form in forms(key):
            text = text.replace(form, MASK)
    raw = [k.encode("utf-8", "backslashreplace") for k in keys]
    return _BASE64_RUN.sub(lambda m: MASK if _holds_secret(m.group(0), raw) else m.group(0), text)
