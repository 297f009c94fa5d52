"""`rung export`: a run or model as safetensors (transformers, vLLM) or GGUF (llama.cpp, Ollama), checked by
reloading it. Only click loads here; torch, transformers and gguf load inside the command body."""

from __future__ import annotations

from pathlib import Path

import click

from rung.cli.options import settings_and_problems, settings_options
from rung.core.settings import ExportSettings


@click.command()
@click.argument("source", metavar="RUN_OR_MODEL")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for the export (new, empty, or an earlier export; else --overwrite).")
@settings_options(ExportSettings, values=True, later=("format", "quant"))
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out that rung did not create (files of "
                                                "the same name are replaced).")
def export(source: str, out_dir: Path, overwrite: bool, **flags) -> None:
    """Export a run or model to safetensors or GGUF and check it by reloading it.

    RUN_OR_MODEL is a rung run folder (a LoRA adapter is merged into its base), a model folder, a hub id or
    builtin:tiny. The written files are reloaded (transformers; llama.cpp too when `rung[export]` is installed)
    and compared with the source on held-out prompts; export_report.md holds the figures. A failed check exits
    3 and leaves nothing in --out.
    """
    from rung.trainers.export.pipeline import check_export, export_model

    from rung.core.errors import RungError

    settings, problems = settings_and_problems(ExportSettings, flags)
    check_export(source, out_dir, fmt=settings.format, quant=settings.quant, ollama=settings.ollama,
                 overwrite=overwrite)  # every problem of the arguments (format and quant too), source and --out
    if problems:
        raise RungError(problems)
    export_model(source, out_dir, fmt=settings.format, quant=settings.quant, ollama=settings.ollama,
                 overwrite=overwrite, trust_remote_code=settings.trust_remote_code)


__all__ = ["export"]
