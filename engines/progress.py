"""Progress lines for answering rows: `  zero_shot: 8/50 rows, 1.9 s/row, ETA 80 s`.

Rows go to a model in the groups it answers at once (`rows_per_call`: a transformers batch, llama.cpp's pool,
32 for an endpoint), and one line follows each group, so a long probe or gate shows it is moving.
"""

from __future__ import annotations

import time
from typing import Any, Callable

Echo = Callable[[str], None]
DEFAULT_GROUP = 32  # rows per call for a model that does not say (an endpoint client)


def group_size(model: Any) -> int:
    return max(1, int(getattr(model, "rows_per_call", DEFAULT_GROUP) or DEFAULT_GROUP))


class RowProgress:
    """Counts answered rows and prints one line per group, with seconds per row and the time left."""

    def __init__(self, label: str, total: int, echo: Echo, *, earlier: int = 0):
        self.label, self.total, self.echo, self.earlier = label, total, echo, earlier
        self.done, self.seconds = 0, 0.0

    def advance(self, rows: int, seconds: float) -> None:
        self.done += rows
        self.seconds += seconds
        each = self.seconds / max(self.done, 1)
        left = self.total - self.earlier - self.done
        note = f" ({self.earlier} from an earlier run)" if self.earlier else ""
        eta = f", ETA {_duration(left * each)}" if left > 0 else f", {_duration(self.seconds)} in all"
        self.echo(f"  {self.label}: {self.earlier + self.done}/{self.total} rows{note}, {each:.2f} s/row{eta}")


def answer_rows(model: Any, conversations: list, *, max_new_tokens: int, label: str, echo: Echo) -> list[str]:
    """Every conversation's answer, asked a group at a time, with a progress line after each group."""
    if hasattr(model, "loaded"):
        model.loaded()  # a local model loads before the clock starts
    progress = RowProgress(label, len(conversations), echo)
    answers: list[str] = []
    step = group_size(model)
    for start in range(0, len(conversations), step):
        began = time.perf_counter()
        group = conversations[start:start + step]
        answers += model.chat(group, max_new_tokens=max_new_tokens)
        progress.advance(len(group), time.perf_counter() - began)
    return answers


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
