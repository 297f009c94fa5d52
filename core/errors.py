"""Domain errors: one line per problem on stderr, exit code 2, never a traceback (unless --debug).

A plain exception: the library raises it, and only the command line (cli/lazy.py) turns it into click's error
display and exit code 2."""

from __future__ import annotations

from typing import Iterable


class RungError(Exception):
    """An error the user can act on: `message` holds one line per problem."""

    exit_code = 2

    def __init__(self, message: str | Iterable[str]):
        if not isinstance(message, str):
            message = "\n".join(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' when a close match exists, else ''."""
    import difflib  # only error paths need it; keeps `rung advise` start-up small

    if len(word) > 100:  # a pasted blob is no typo (and difflib is quadratic)
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
