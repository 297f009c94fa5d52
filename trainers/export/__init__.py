"""`rung export`: a trained model in a form other tools load, checked by reloading it.

    export_model(source, out_dir, fmt="safetensors" | "gguf", quant=None | "f16" | "bf16" | "q8_0" | "q4_0",
                 ollama=False)

- source.py       what RUN_OR_MODEL names: a rung run folder (a LoRA adapter is merged in memory), a model
                  folder, a hub id or builtin:tiny; and the held-out prompts the check uses
- safetensors.py  the merged model in the standard Hugging Face layout (transformers, vLLM, TGI load it)
- gguf.py         one GGUF file for llama.cpp and Ollama, written with the `gguf` package (Llama family)
- ollama.py       a Modelfile: the chat template translated into a Go template, the stop tokens
- verify.py       reload what was written and compare it with the source on held-out prompts
- pipeline.py     the order of things: check, load, write into a temporary sibling, verify, rename into place

Nothing here imports torch, transformers or gguf at module level: `rung export --help` stays fast.
"""

from __future__ import annotations

FORMATS = ("safetensors", "gguf")
GGUF_QUANTS = ("f16", "bf16", "q8_0", "q4_0")
DEFAULT_GGUF_QUANT = "f16"
LOSSLESS_QUANTS = ("f16", "bf16")  # exact up to the rounding of each weight to the stored type
EXPORT_MARKER = "rung_export.yaml"  # what an export folder holds beside the model (and what lets a re-export in)
REPORT_NAME = "export_report.md"
MODELFILE_NAME = "Modelfile"


def gguf_file_name(quant: str) -> str:
    return f"model-{quant}.gguf"


__all__ = ["FORMATS", "GGUF_QUANTS", "DEFAULT_GGUF_QUANT", "LOSSLESS_QUANTS", "EXPORT_MARKER", "REPORT_NAME",
           "MODELFILE_NAME", "gguf_file_name"]
