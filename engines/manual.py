"""The `manual` engine: a to-do for a person (collect 100 labelled examples, ask legal about a licence).

`rung run` does not wait for it: the step is recorded as open in report.md, with what to do and when it is
done, and the run moves on. A later step that needs its output fails on the missing data with a clear line.
"""

from __future__ import annotations

from typing import Any

from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.settings import ManualSettings


def run_step(step: dict[str, Any], ctx: StepContext) -> StepResult:
    settings = step_settings(ManualSettings, step, ctx)
    task = settings.task or step.get("description") or step.get("id")
    lines = [f"- [ ] **To do:** {task}"]
    if settings.done_when:
        lines.append(f"  - done when: {settings.done_when}")
    if settings.owner:
        lines.append(f"  - owner: {settings.owner}")
    lines.append("  - rung does not do this step; it stays open in this report.")
    return StepResult(outputs={}, metrics={"status": "open"}, summary="\n".join(lines))
