"""A model folder checked before anything loads it: safetensors headers read by hand, config.json field types.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {...}}), then the tensor bytes. A truncated download, a lying
header (offsets past the end, a shape that does not match its bytes, gaps or overlaps) or a header length of
terabytes makes the loaders fail deep inside with a traceback, or allocate first and fail after. Here only
the header is read (at most MAX_HEADER_BYTES, safetensors' own limit), and every declared offset is checked
against the file's real size, so such a file is one line naming it. config.json gets the same treatment for
the fields rung and transformers read first: `architectures` a list of names, sizes whole numbers in range.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100 * 1000 * 1000   # safetensors refuses larger headers too
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 1_000_000
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
# config.json sizes: whole numbers >= 1 and at most this (a lying config must not size a terabyte embedding)
CONFIG_SIZES = {"vocab_size": 2**24, "hidden_size": 2**20, "intermediate_size": 2**22, "num_hidden_layers": 4096,
                "num_attention_heads": 2**16, "num_key_value_heads": 2**16, "max_position_embeddings": 2**26,
                "head_dim": 2**16}
CONFIG_STRINGS = ("model_type", "torch_dtype", "dtype")


def _open_regular(path: Path) -> tuple[int, int]:
    """(fd, size) of a regular file, opened without blocking (a FIFO there never hangs the check)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError("not a regular file")
    return fd, info.st_size


def _read_exactly(fd: int, count: int) -> bytes:
    chunks, left = [], count
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _tensor_problem(name: str, entry: Any, data_size: int) -> str | None:
    if not isinstance(entry, dict):
        return f"tensor {name!r}: its header entry is not an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        return f"tensor {name!r}: unknown dtype {str(dtype)[:20]!r}"
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        return f"tensor {name!r}: shape is not a list of whole numbers >= 0"
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        return f"tensor {name!r}: data_offsets is not [begin, end]"
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        return (f"tensor {name!r}: bytes {begin:,}..{end:,} lie outside the {data_size:,} bytes of data "
                "(a truncated file?)")
    if math.prod(shape) * DTYPE_BYTES[dtype] != end - begin:
        return f"tensor {name!r}: shape {shape} of {dtype} does not fill its {end - begin:,} bytes"
    return None


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """None for a well-formed safetensors file; else one line naming the file and what is wrong."""
    path = Path(path)
    try:
        fd, size = _open_regular(path)
    except (OSError, ValueError) as error:
        return f"{path}: cannot read it ({getattr(error, 'strerror', None) or error})"
    try:
        if size < 8:
            return f"{path}: {size} bytes, too short for a safetensors file (a truncated download?)"
        (header_len,) = struct.unpack("<Q", _read_exactly(fd, 8))
        if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            return (f"{path}: its header claims {header_len:,} bytes but the file holds {size:,} (truncated or "
                    "not a safetensors file)")
        raw = _read_exactly(fd, header_len)
    except OSError as error:
        return f"{path}: cannot read it ({error.strerror or error})"
    finally:
        os.close(fd)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return f"{path}: the safetensors header is not JSON (a damaged or foreign file)"
    if not isinstance(header, dict):
        return f"{path}: the safetensors header is not a JSON object"
    if not isinstance(header.get("__metadata__", {}), dict):
        return f"{path}: the safetensors __metadata__ is not an object"
    tensors = [(k, v) for k, v in header.items() if k != "__metadata__"]
    if len(tensors) > MAX_TENSORS:
        return f"{path}: {len(tensors):,} tensors declared, past any real model"
    data_size = size - 8 - header_len
    for name, entry in tensors:
        problem = _tensor_problem(str(name)[:80], entry, data_size)
        if problem:
            return f"{path}: {problem}"
    spans = sorted(tuple(entry["data_offsets"]) for _, entry in tensors)
    expected = 0
    for begin, end in spans:
        if begin != expected:
            return f"{path}: the tensors' bytes overlap or leave gaps (at byte {begin:,}): a damaged header"
        expected = end
    if expected != data_size:
        return f"{path}: {data_size - expected:,} bytes after the last tensor: a damaged or padded file"
    return None


def _read_json(path: Path, what: str) -> tuple[Any, str | None]:
    try:
        fd, size = _open_regular(path)
    except (OSError, ValueError) as error:
        return None, f"{path}: cannot read the {what} ({getattr(error, 'strerror', None) or error})"
    try:
        if size > MAX_CONFIG_BYTES:
            return None, f"{path}: the {what} is {size:,} bytes, over {MAX_CONFIG_BYTES:,}"
        raw = _read_exactly(fd, size)
    finally:
        os.close(fd)
    try:
        return json.loads(raw.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, f"{path}: the {what} is not valid JSON"


def config_problems(path: str | os.PathLike) -> list[str]:
    """Problems with a config.json's types (a JSON object; architectures a list of names; sizes in range)."""
    path = Path(path)
    config, problem = _read_json(path, "model config")
    if problem:
        return [problem]
    if not isinstance(config, dict):
        return [f"{path}: the model config is not a JSON object"]
    problems = []
    architectures = config.get("architectures")
    if architectures is not None and not (isinstance(architectures, list)
                                          and all(isinstance(a, str) and a for a in architectures)):
        problems.append(f"{path}: architectures must be a list of class names, e.g. [\"LlamaForCausalLM\"]")
    for key in CONFIG_STRINGS:
        if key in config and config[key] is not None and not isinstance(config[key], str):
            problems.append(f"{path}: {key} must be a string")
    for key, limit in CONFIG_SIZES.items():
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            problems.append(f"{path}: {key} must be a whole number from 1 to {limit:,}")
    return problems


def model_folder_problems(folder: str | os.PathLike) -> list[str]:
    """Every problem found in a model or adapter folder's config and safetensors files, before any load."""
    folder = Path(folder)
    problems = []
    if (folder / "config.json").exists():
        problems += config_problems(folder / "config.json")
    if (folder / "adapter_config.json").exists():
        where = folder / "adapter_config.json"
        config, problem = _read_json(where, "adapter config")
        if problem or not isinstance(config, dict):
            problems.append(problem or f"{where}: the adapter config is not a JSON object")
        else:
            rank, base = config.get("r"), config.get("base_model_name_or_path")
            if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 65536):
                problems.append(f"{where}: r (the LoRA rank) must be a whole number from 1 to 65,536")
            if base is not None and not (isinstance(base, str) and base.strip() and base.isprintable()):
                problems.append(f"{where}: base_model_name_or_path must be a model name or folder")
    index = folder / "model.safetensors.index.json"
    if index.exists():
        mapping, problem = _read_json(index, "safetensors index")
        weight_map = mapping.get("weight_map") if isinstance(mapping, dict) else None
        if problem or not isinstance(weight_map, dict):
            problems.append(problem or f"{index}: weight_map must be an object of tensor -> file")
        else:
            for shard in sorted({str(v) for v in weight_map.values()}):
                if Path(shard).name != shard or shard in (".", ".."):
                    problems.append(f"{index}: a shard is named outside the folder; shards are file names")
                    break
                if not (folder / shard).is_file():
                    problems.append(f"{index}: shard {shard} is missing (an incomplete download?)")
    for file in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(file)
        if problem:
            problems.append(problem)
    return problems
