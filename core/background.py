"""Calls run on daemon threads, a few at a time, that the caller can walk away from (Ctrl-C, a failure)."""

from __future__ import annotations

import threading
from typing import Any, Callable


def run_abandonable(calls: list[Callable[[], Any]], *, workers: int, poll_s: float = 0.2) -> list[Any]:
    """Each call's result, in order, `workers` at a time on daemon threads. The first failure (in input order)
    raises at once and no queued call starts after it; on any exit (Ctrl-C included) calls in flight are
    abandoned rather than waited for: a daemon thread cannot hold the process open, a ThreadPoolExecutor's
    workers would (the interpreter joins them at exit). The exception that leaves carries the results that
    did arrive as `partial_results` ({index: result}), so a caller can keep them (a probe resumes from them)."""
    results: list = [None] * len(calls)
    done = [False] * len(calls)
    failures: dict[int, BaseException] = {}
    queue = list(range(len(calls)))
    stop = threading.Event()
    changed = threading.Condition()

    def work() -> None:
        while not stop.is_set():
            with changed:
                if not queue:
                    return
                index = queue.pop(0)
            try:
                value = calls[index]()
                with changed:
                    results[index], done[index] = value, True
                    changed.notify_all()
            except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
                with changed:
                    failures[index], done[index] = error, True
                    changed.notify_all()

    for number in range(max(1, workers)):
        threading.Thread(target=work, name=f"rung-endpoint-{number}", daemon=True).start()
    try:
        for index in range(len(calls)):
            with changed:
                while not done[index]:
                    changed.wait(poll_s)  # short waits: a KeyboardInterrupt is taken between them
            if index in failures:
                raise failures[index]
        return results
    except BaseException as error:
        with changed:
            arrived = {i: results[i] for i in range(len(calls)) if done[i] and i not in failures}
        try:
            error.partial_results = arrived  # type: ignore[attr-defined]
        except AttributeError:  # an exception type that takes no attributes
            pass
        raise
    finally:
        stop.set()
