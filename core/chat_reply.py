"""A chat completion body, checked for shape and types before any of it is used.

The openai client builds its response objects without validation (pydantic's model_construct), so a server
answering `"choices": "x"` or `"message": "x"` hands on a string where a list or an object belongs, and the
first attribute access is a traceback. rung reads the JSON body itself, here: the answer is
choices[0].message.content as a string (or the text parts of a content list, the shape of OpenAI's
multi-part messages; a null content is an empty answer); anything else is one line saying what was wrong.
Usage is optional: a missing or malformed one (non-numeric, negative, a boolean) is counted as absent, since
it does not change the answer.
"""

from __future__ import annotations

import math
from typing import Any

MAX_TOKENS_REPORTED = 10**9  # past this, a usage figure is a server bug, not a count


class ReplyShapeError(ValueError):
    """The body is JSON, but not a chat completion rung can read; the message says which field is wrong."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def answer_text(body: Any) -> str:
    """choices[0].message.content of a chat completion body (parsed JSON); ReplyShapeError otherwise."""
    if not isinstance(body, dict):
        raise ReplyShapeError(f"the body is {_kind(body)}, not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise ReplyShapeError(f'"choices" is {_kind(choices)}, not a list')
    if not choices:
        raise ReplyShapeError('"choices" is empty')
    first = choices[0]
    if not isinstance(first, dict):
        raise ReplyShapeError(f'"choices[0]" is {_kind(first)}, not an object')
    message = first.get("message")
    if not isinstance(message, dict):
        raise ReplyShapeError(f'"choices[0].message" is {_kind(message)}, not an object')
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for index, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") in ("refusal", "image_url", "input_audio"):
                continue
            else:
                raise ReplyShapeError(f'"choices[0].message.content[{index}]" is not a text part')
        return "".join(parts)
    raise ReplyShapeError(f'"choices[0].message.content" is {_kind(content)}, not a string')


def usage_counts(body: Any) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) when the body reports both as whole numbers in range, else None."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS_REPORTED:
            return None
        counts.append(value)
    return counts[0], counts[1]
