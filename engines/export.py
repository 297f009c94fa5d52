"""Engine `export` for `rung run`: the from_step model exported (merged safetensors or GGUF) and checked by
reloading it, as `rung export` does; the report links the files and shows the check's figures."""

from __future__ import annotations

from typing import Any

from rung.core.errors import RungError
from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.settings import ExportSettings


def run_step(step: dict[str, Any], ctx: StepContext) -> StepResult:
    from rung.core.fileio import read_yaml
    from rung.trainers.export import EXPORT_MARKER, REPORT_NAME
    from rung.trainers.export.pipeline import argument_problems, export_model

    settings = step_settings(ExportSettings, step, ctx)
    source = step.get("from_step")
    model = (ctx.outputs.get(source) or {}).get("model_dir") if source else None
    problems = argument_problems(settings.format, settings.quant, settings.ollama)
    if not model:
        problems.append(f"step {step.get('id')}: export needs from_step naming a training step (its model_dir)")
    if problems:
        raise RungError(problems)
    out = ctx.run_dir / "model"
    export_model(str(model), out, fmt=settings.format, quant=settings.quant, ollama=settings.ollama,
                 overwrite=True, trust_remote_code=settings.trust_remote_code, echo=print)
    record = read_yaml(out / EXPORT_MARKER, what="export record")
    figures = record.get("figures") or {}
    metrics = {"format": settings.format, "quant": record.get("quant"), "passed": record.get("passed"),
               **{k: v for k, v in figures.items() if isinstance(v, (int, float, str, bool))}}
    files = ", ".join(f"[{name}](model/{name})" for name in record.get("files") or [])
    return StepResult(outputs={"export_dir": str(out), "report": str(out / REPORT_NAME)}, metrics=metrics,
                      summary=f"Exported `{model}` as {settings.format}"
                              + (f" {record.get('quant')}" if record.get("quant") else "")
                              + f" and checked it by reloading: {files}. Figures: "
                              + f"[{REPORT_NAME}](model/{REPORT_NAME}).")
