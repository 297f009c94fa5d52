"""`rung export`, top to bottom: check every input, load (merge), write into a temporary sibling of --out, reload
and compare, and only then rename into place. A failed check exits 3 (1 is the gate's DON'T SHIP alone) and
leaves nothing that looks finished.

    1. problems with the arguments, the source and --out, all at once (exit 2); for GGUF the architecture and
       the tokenizer too, and for --ollama the chat template's translation -- before any weights load
    2. load the source; a LoRA adapter is merged in memory (source.py)
    3. write the model into .OUT.exporting-XXXX next to --out (safetensors.py, gguf.py)
    4. the source's reference answers and log-probs on held-out prompts (verify.py build_reference)
    5. reload what was written and compare (verify.py); write the Modelfile (ollama.py), export_report.md and
       rung_export.yaml
    6. passed: rename into place; failed: remove the temporary folder, print the report, exit 3
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import click

from rung.core.errors import RungError, did_you_mean
from rung.trainers.export import (DEFAULT_GGUF_QUANT, EXPORT_MARKER, FORMATS, GGUF_QUANTS, LOSSLESS_QUANTS,
                                  MODELFILE_NAME, REPORT_NAME, gguf_file_name)


class ExportCheckFailed(RungError):
    """The reloaded file does not match the source: exit 3 (a failed check, not a bad input; 1 is the gate's DON'T SHIP)."""

    exit_code = 3


def argument_problems(fmt: str, quant: str | None, ollama: bool) -> list[str]:
    problems = []
    if fmt not in FORMATS:
        problems.append(f'--format "{fmt}" is not one of {", ".join(FORMATS)}{did_you_mean(fmt, FORMATS)}')
    if quant is not None and quant not in GGUF_QUANTS:
        problems.append(f'--quant "{quant}" is not one of {", ".join(GGUF_QUANTS)}{did_you_mean(quant, GGUF_QUANTS)}')
    elif quant is not None and fmt == "safetensors":
        problems.append("--quant is for --format gguf; safetensors keeps the base model's dtype")
    if ollama and fmt != "gguf":
        problems.append("--ollama writes a Modelfile beside a GGUF: add --format gguf")
    return problems


def check_export(spec: str, out_dir: Path, *, fmt: str, quant: str | None, ollama: bool,
                 overwrite: bool) -> str:
    """The source spec (a local folder made absolute), or one RungError listing every problem. Loads nothing."""
    from rung.core.inputs import out_dir_problems
    from rung.trainers.export.source import check_source

    problems = argument_problems(fmt, quant, ollama)
    spec, problem = check_source(spec)
    problems += [problem] if problem else []
    problems += out_dir_problems(out_dir, overwrite=overwrite, marker=EXPORT_MARKER)
    if problems:
        raise RungError(problems)
    return spec


class GgufWriter:
    """One GGUF file (llama.cpp, Ollama), checked by reloading it in llama.cpp (and transformers)."""

    def __init__(self, quant: str, name: str):
        self.quant, self.name, self.file_name, self.info = quant, name, gguf_file_name(quant), {}

    def label(self, model) -> str:
        return f"gguf {self.quant}"

    def write(self, model, tokenizer, staging: Path, echo) -> list[str]:
        from rung.trainers.export import gguf as gguf_mod

        self.info = gguf_mod.write_gguf(model, tokenizer, staging / self.file_name, self.quant, name=self.name)
        types = ", ".join(f"{n} {t}" for t, n in sorted(self.info["types"].items()))
        echo(f"Wrote {self.file_name} ({(staging / self.file_name).stat().st_size / 1e6:,.1f} MB; tensors: {types}; "
             f"tokenizer pre {self.info['tokenizer_pre']})")
        return [self.file_name]

    def verify(self, staging: Path, reference):
        from rung.trainers.export import verify

        return verify.verify_gguf(str(staging / self.file_name), reference, self.quant,
                                  chat_template=self.info["chat_template"])


class SafetensorsWriter:
    """The merged model in the Hugging Face layout (transformers, vLLM), checked by reloading it."""

    quant = None
    file_name = None

    def label(self, model) -> str:
        return f"safetensors ({str(model.dtype).replace('torch.', '')})"

    def write(self, model, tokenizer, staging: Path, echo) -> list[str]:
        from rung.trainers.export import safetensors as safetensors_mod

        written = safetensors_mod.write_safetensors(model, tokenizer, staging)["files"]
        echo(f"Wrote {', '.join(written)}")
        return written

    def verify(self, staging: Path, reference):
        from rung.trainers.export import verify

        return verify.verify_safetensors(str(staging), reference)


def export_model(spec: str, out_dir: str | Path, *, fmt: str = "safetensors", quant: str | None = None,
                 ollama: bool = False, overwrite: bool = False, trust_remote_code: bool = False,
                 echo: Callable[[str], None] = click.echo, before_verify: Callable[[Path], None] | None = None) -> Path:
    """Export, verify and move into place (module docstring). Returns the folder. `before_verify(staging)` runs
    between writing and checking (tests use it to tamper with the file)."""
    from rung.core.fileio import os_error_text, staging_dir
    from rung.trainers.common import quiet_libraries
    from rung.trainers.export import source as source_mod

    out_dir = Path(out_dir).expanduser()
    spec = check_export(spec, out_dir, fmt=fmt, quant=quant, ollama=ollama, overwrite=overwrite)
    writer = GgufWriter(quant or DEFAULT_GGUF_QUANT, _model_name(spec)) if fmt == "gguf" else SafetensorsWriter()
    started = time.perf_counter()
    # 1. what GGUF cannot hold is known from the config and the tokenizer, before the weights load
    translation = gguf_precheck(spec, ollama, trust_remote_code) if fmt == "gguf" else None
    # 2. the source, merged
    quiet_libraries()
    echo(f"Loading {spec} ...")
    source = source_mod.load_source(spec, trust_remote_code=trust_remote_code)
    timings = {"load_s": time.perf_counter() - started}
    echo(f"Exporting {source.description} as {writer.label(source.model)}")
    staging = staging_dir(out_dir, "exporting")
    try:
        written, result = write_and_check(writer, source, staging, translation, timings, echo, before_verify)
        timings["total_s"] = time.perf_counter() - started
        finish(spec, source, fmt, writer.quant, written, staging, result, timings, out_dir, echo)
    except OSError as error:
        raise RungError(os_error_text(error, "write the export to", out_dir)) from None
    except Exception as error:  # noqa: BLE001 - safetensors and torch wrap a full disk in their own errors
        from rung.core.fileio import storage_full

        if not storage_full(error):
            raise
        raise RungError(f"cannot write the export to {out_dir}: no space left on the device (the temporary "
                        f"folder in {out_dir.parent} is removed)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    echo(f"Passed. {out_dir}: {', '.join(written + [REPORT_NAME])} ({timings['total_s']:.1f} s)")
    return out_dir


def gguf_precheck(spec: str, ollama: bool, trust_remote_code: bool):
    """The architecture and the tokenizer GGUF can hold, and for --ollama the chat template's Go translation:
    refused (or made) from the config and the tokenizer alone."""
    from rung.trainers.common import quiet_libraries
    from rung.trainers.export import gguf as gguf_mod
    from rung.trainers.export import ollama as ollama_mod
    from rung.trainers.export import source as source_mod

    problems = gguf_mod.architecture_problems(source_mod.model_config(spec, trust_remote_code=trust_remote_code))
    if problems:
        raise RungError(problems)
    quiet_libraries()
    tokenizer = source_mod.load_source_tokenizer(spec, trust_remote_code=trust_remote_code)
    gguf_mod.tokenizer_layout(tokenizer)
    if not ollama:
        return None
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    tokenizer.chat_template = gguf_mod.template_for_gguf(tokenizer.chat_template)
    return ollama_mod.translate(tokenizer, strip_bos=adds_bos)


def write_and_check(writer, source, staging: Path, translation, timings: dict, echo,
                    before_verify: Callable[[Path], None] | None) -> tuple[list[str], Any]:
    """3-5: write into staging, take the source's reference answers, free it, reload what was written and
    compare; the Modelfile beside a GGUF. Returns the files written and the comparison (verify.py)."""
    from rung.trainers.export import ollama as ollama_mod
    from rung.trainers.export import verify

    model, tokenizer = source.model, source.tokenizer
    tick = time.perf_counter()
    written = writer.write(model, tokenizer, staging, echo)
    timings["write_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    echo(f"Checking on {len(source.prompts)} prompts: {source.prompts_from}")
    reference = verify.build_reference(model, tokenizer, source.prompts,
                                       round_to=writer.quant if writer.quant in LOSSLESS_QUANTS else None)
    del model, source.model
    _free_accelerator_memory()
    timings["reference_s"] = time.perf_counter() - tick
    if before_verify is not None:
        before_verify(staging)
    tick = time.perf_counter()
    result = writer.verify(staging, reference)
    timings["verify_s"] = time.perf_counter() - tick
    if translation is not None:
        template, chat = translation
        stops = ollama_mod.stop_words(tokenizer, chat, reference.stops)
        (staging / MODELFILE_NAME).write_text(ollama_mod.modelfile(writer.file_name, template, stops),
                                              encoding="utf-8")
        written.append(MODELFILE_NAME)
    return written, result


def finish(spec: str, source, fmt: str, quant: str | None, written: list[str], staging: Path, result,
           timings: dict, out_dir: Path, echo) -> None:
    """6: print the checks; a failure raises ExportCheckFailed (exit 3), a pass writes the report and the record
    and moves the folder into place."""
    from rung.core.fileio import atomic_write_yaml

    report = render_report(source, fmt, quant, written, staging, result, timings)
    for check in result.checks:
        mark = {True: "ok  ", False: "FAIL", None: "    "}[check.passed]
        echo(f"  {mark} {check.engine}: {check.name}: {check.figure} ({check.threshold})")
    for note in result.notes:
        echo(f"  {note}")
    if not result.passed:
        failed = "; ".join(f"{c.engine} {c.name}: {c.figure} (needs {c.threshold})" for c in result.failures())
        raise ExportCheckFailed(f"the exported model does not match the source: {failed}. Nothing was written "
                                f"to {out_dir}.")
    (staging / REPORT_NAME).write_text(report, encoding="utf-8")
    atomic_write_yaml(staging / EXPORT_MARKER, {
        "source": spec, "description": source.description, "format": fmt, "quant": quant,
        "files": written, "passed": True, "prompts": source.prompts_from,
        "figures": result.figures, "seconds": {k: round(v, 2) for k, v in timings.items()}})
    _move_into_place(staging, out_dir)


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _model_name(spec: str) -> str:
    return Path(spec).name if os.sep in spec or Path(spec).exists() else spec.replace(":", "-").replace("/", "-")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the checked folder into place; into an earlier export (or --overwrite), file by file."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        if out_dir.exists():
            out_dir.rmdir()
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp made it 0700
        os.replace(staging, out_dir)
        return
    for item in staging.iterdir():
        target = out_dir / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(item, target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def render_report(source, fmt: str, quant: str | None, written: list[str], folder: Path, result,
                  timings: dict[str, float]) -> str:
    """export_report.md: what was exported, every check with its figure and threshold, the timings."""
    from rung.trainers.export import verify

    size = sum((folder / name).stat().st_size for name in written if (folder / name).is_file())
    lines = [f"# Export report: {fmt}" + (f" {quant}" if quant else ""), "",
             f"- source: {source.description}",
             f"- files: {', '.join(written)} ({size / 1e6:,.1f} MB)",
             f"- prompts: {source.prompts_from}; each answered greedily by the source (up to "
             f"{verify.MAX_NEW_TOKENS} tokens), then compared teacher-forced on prompt + answer",
             f"- result: {'passed' if result.passed else 'FAILED'}", "",
             "| check | reloaded with | measured | required | result |", "|---|---|---|---|---|"]
    for check in result.checks:
        verdict = {True: "pass", False: "**FAIL**", None: "reported"}[check.passed]
        lines.append(f"| {check.name} | {check.engine} | {check.figure} | {check.threshold} | {verdict} |")
    lines += [""] + [f"- {note}" for note in result.notes]
    lines += ["", "Thresholds (trainers/export/verify.py): lossless formats (safetensors, f16, bf16) must give "
              "identical greedy tokens and logits within "
              f"{verify.LOSSLESS_MAX_LOGIT_DIFF:g} of the source with its matrices rounded to the stored type; "
              + "; ".join(f"{name}: top-1 >= {t.min_top1}, mean KL <= {t.max_kl}"
                          for name, t in verify.QUANT_THRESHOLDS.items())
              + "; through llama.cpp: " + "; ".join(f"{name}: top-1 >= {t.min_top1}, mean KL <= {t.max_kl}"
                                                    for name, t in verify.LLAMA_CPP_THRESHOLDS.items()) + ".",
              "", "Seconds: " + ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in timings.items()), ""]
    return "\n".join(lines)


__all__ = ["export_model", "check_export", "argument_problems", "ExportCheckFailed", "render_report"]
