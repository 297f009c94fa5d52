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
import tempfile
import time
from pathlib import Path
from typing import Callable

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


def export_model(spec: str, out_dir: str | Path, *, fmt: str = "safetensors", quant: str | None = None,
                 ollama: bool = False, overwrite: bool = False, trust_remote_code: bool = False,
                 echo: Callable[[str], None] = click.echo, before_verify: Callable[[Path], None] | None = None) -> Path:
    """Export, verify and move into place (module docstring). Returns the folder. `before_verify(staging)` runs
    between writing and checking (tests use it to tamper with the file)."""
    from rung.core.fileio import make_dir, os_error_text
    from rung.trainers.common import quiet_libraries
    from rung.trainers.export import gguf as gguf_mod
    from rung.trainers.export import ollama as ollama_mod
    from rung.trainers.export import safetensors as safetensors_mod
    from rung.trainers.export import source as source_mod
    from rung.trainers.export import verify

    out_dir = Path(out_dir).expanduser()
    spec = check_export(spec, out_dir, fmt=fmt, quant=quant, ollama=ollama, overwrite=overwrite)
    quant = (quant or DEFAULT_GGUF_QUANT) if fmt == "gguf" else None
    started = time.perf_counter()
    timings: dict[str, float] = {}

    # 1. what GGUF cannot hold is known from the config and the tokenizer, before the weights load
    translation = None
    if fmt == "gguf":
        problems = gguf_mod.architecture_problems(source_mod.model_config(spec, trust_remote_code=trust_remote_code))
        if problems:
            raise RungError(problems)
        quiet_libraries()
        tokenizer = source_mod.load_source_tokenizer(spec, trust_remote_code=trust_remote_code)
        gguf_mod.tokenizer_layout(tokenizer)
        if ollama:
            adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
            tokenizer.chat_template = gguf_mod.template_for_gguf(tokenizer.chat_template)
            translation = ollama_mod.translate(tokenizer, strip_bos=adds_bos)
    # 2. the source, merged
    quiet_libraries()
    echo(f"Loading {spec} ...")
    source = source_mod.load_source(spec, trust_remote_code=trust_remote_code)
    model, tokenizer = source.model, source.tokenizer
    timings["load_s"] = time.perf_counter() - started
    what = f"gguf {quant}" if fmt == "gguf" else f"safetensors ({str(model.dtype).replace('torch.', '')})"
    echo(f"Exporting {source.description} as {what}")

    make_dir(out_dir.parent, what="folder")
    try:
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.exporting-"))
    except OSError as error:
        raise RungError(os_error_text(error, "create a folder in", out_dir.parent)) from None
    try:
        # 3. write
        tick = time.perf_counter()
        if fmt == "gguf":
            file_name = gguf_file_name(quant)
            info = gguf_mod.write_gguf(model, tokenizer, staging / file_name, quant, name=_model_name(spec))
            written = [file_name]
            types = ", ".join(f"{n} {t}" for t, n in sorted(info["types"].items()))
            echo(f"Wrote {file_name} ({(staging / file_name).stat().st_size / 1e6:,.1f} MB; tensors: {types}; "
                 f"tokenizer pre {info['tokenizer_pre']})")
        else:
            info = safetensors_mod.write_safetensors(model, tokenizer, staging)
            written = info["files"]
            echo(f"Wrote {', '.join(written)}")
        timings["write_s"] = time.perf_counter() - tick
        # 4. the reference answers of the source
        tick = time.perf_counter()
        echo(f"Checking on {len(source.prompts)} prompts: {source.prompts_from}")
        reference = verify.build_reference(model, tokenizer, source.prompts,
                                           round_to=quant if quant in LOSSLESS_QUANTS else None)
        del model, source.model
        _free_accelerator_memory()
        timings["reference_s"] = time.perf_counter() - tick
        if before_verify is not None:
            before_verify(staging)
        # 5. reload and compare
        tick = time.perf_counter()
        if fmt == "gguf":
            result = verify.verify_gguf(str(staging / file_name), reference, quant, chat_template=info["chat_template"])
        else:
            result = verify.verify_safetensors(str(staging), reference)
        timings["verify_s"] = time.perf_counter() - tick
        timings["total_s"] = time.perf_counter() - started
        if translation is not None:
            template, chat = translation
            stops = ollama_mod.stop_words(tokenizer, chat, reference.stops)
            (staging / MODELFILE_NAME).write_text(ollama_mod.modelfile(file_name, template, stops), encoding="utf-8")
            written.append(MODELFILE_NAME)
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
        from rung.core.fileio import atomic_write_yaml

        atomic_write_yaml(staging / EXPORT_MARKER, {
            "source": spec, "description": source.description, "format": fmt, "quant": quant,
            "files": written, "passed": True, "prompts": source.prompts_from,
            "figures": result.figures, "seconds": {k: round(v, 2) for k, v in timings.items()}})
        _move_into_place(staging, out_dir)
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
