"""What model builders share: rung's cache folder, an atomic build-into-place, a spec's cache key, and ChatML,
the chat template rung gives a tokenizer that has none. core/models.py (builtin:tiny) and core/gguf_convert.py
(GGUF files) both build cached model folders with these."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

# ChatML, the template rung gives a tokenizer that has none (documented in README). The {% generation %}
# markers let TRL compute assistant-only loss; each assistant turn ends with <|im_end|>, the EOS token,
# so a fine-tuned model learns to stop.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def cache_root() -> Path:
    return Path(os.environ.get("RUNG_CACHE", Path.home() / ".cache" / "rung")).expanduser()


def spec_key(spec: dict[str, Any]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def cached_build(target: Path, build: Callable[[Path], Path | None], prefix: str) -> Path:
    """Return `target`, building it first if needed: `build(staging)` fills a temp folder (or returns the
    folder it wrote inside it), which is then renamed into place, so a crash never leaves half a model."""
    import shutil
    import tempfile

    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".build-{prefix}-"))
    try:
        built = build(staging) or staging
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(built, 0o777 & ~umask)  # mkdtemp makes 0700 folders; a shared cache should be readable
        try:
            os.replace(built, target)  # atomic: another process may have won the race; both are identical
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
