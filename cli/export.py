"""`rung export`: a run or model as safetensors (transformers, vLLM) or GGUF (llama.cpp, Ollama), checked by
reloading it. Only click loads here; torch, transformers and gguf load inside the command body."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("source", metavar="RUN_OR_MODEL")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for the export (new, empty, or an earlier export; else --overwrite).")
@click.option("--format", "fmt", default="safetensors", show_default=True, metavar="safetensors|gguf",
              help="safetensors: the merged model in the Hugging Face layout (transformers, vLLM). gguf: one file "
                   "for llama.cpp and Ollama (Llama, Mistral, Qwen2 architectures).")
@click.option("--quant", default=None, metavar="f16|bf16|q8_0|q4_0",
              help="GGUF tensor type (default f16). f16/bf16 must reload with identical greedy tokens; q8_0/q4_0 "
                   "must meet the top-1 agreement and KL thresholds in docs/export-and-serve.md.")
@click.option("--ollama", is_flag=True, help="Also write an Ollama Modelfile: the chat template translated into a "
                                             "Go template, and the stop tokens (GGUF only).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --out that rung did not create (files of "
                                                "the same name are replaced).")
@click.option("--trust-remote-code", is_flag=True, help="Allow the model's own code to run.")
def export(source: str, out_dir: Path, fmt: str, quant: str | None, ollama: bool, overwrite: bool,
           trust_remote_code: bool) -> None:
    """Export a run or model to safetensors or GGUF and check it by reloading it.

    RUN_OR_MODEL is a rung run folder (a LoRA adapter is merged into its base), a model folder, a hub id or
    builtin:tiny. The written files are reloaded (transformers; llama.cpp too when `rung[export]` is installed)
    and compared with the source on held-out prompts; export_report.md holds the figures. A failed check exits
    3 and leaves nothing in --out.
    """
    from rung.trainers.export.pipeline import check_export, export_model

    check_export(source, out_dir, fmt=fmt, quant=quant, ollama=ollama, overwrite=overwrite)
    export_model(source, out_dir, fmt=fmt, quant=quant, ollama=ollama, overwrite=overwrite,
                 trust_remote_code=trust_remote_code)


__all__ = ["export"]
