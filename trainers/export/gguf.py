"""One GGUF file for llama.cpp and Ollama, written with the `gguf` package (GGUFWriter, its HF -> GGUF tensor-name
map, SpecialVocab), the way llama.cpp's convert_hf_to_gguf.py writes the Llama family. No network.

Supported (GGUF_ARCHITECTURES):
- LlamaForCausalLM   -> GGUF arch "llama"; q/k rows permuted to llama.cpp's rotary layout (transformers' GGUF
                        loader permutes them back)
- MistralForCausalLM -> "llama" too, as llama.cpp converts it (its sliding window is dropped: llama.cpp's
                        llama graph attends to the whole context; identical for prompts shorter than the window)
- Qwen2ForCausalLM   -> "qwen2" (q/k/v biases kept, no permutation: NeoX rotary layout)
with a byte-level BPE tokenizer (GPT-2 style: builtin:tiny, Llama 3, Qwen2, Mistral's Tekken is not in the list)
whose pre-tokenizer is one llama.cpp names: plain GPT-2 ByteLevel ("gpt-2"), Llama 3's split ("llama-bpe") or
Qwen2's ("qwen2"). Refused, with the reason: other architectures, rope scaling (Llama 3.1's "llama3" needs a
rope_freqs tensor that transformers' GGUF loader does not read back), MLP biases, sentencepiece-style
tokenizers (byte fallback: Llama 2, Mistral 7B v0.1) -- for those, export safetensors and use llama.cpp's own
convert_hf_to_gguf.py.

Tensor types by --quant: f16 / bf16 store every matrix in that type; q8_0 stores matrices in Q8_0; q4_0 stores
matrices in Q4_0 except the token embedding and the output projection, kept in Q8_0 (the two most sensitive
tensors; llama.cpp's quantizer keeps the output in a higher type too). Vectors (norms, biases) stay F32, and a
matrix whose rows are not a whole number of 32-value blocks falls back to F16, as in convert_hf_to_gguf.py.
K-quants (Q4_K_M, ...) cannot be written by the `gguf` package: quantize the f16 file with llama.cpp's
llama-quantize for those.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from rung.core.errors import RungError

# HF architecture -> (GGUF architecture, permute q/k for llama.cpp's interleaved rotary layout)
GGUF_ARCHITECTURES: dict[str, tuple[str, bool]] = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
}

# The chat template's {% generation %} markers are transformers' own Jinja extension (assistant-only loss);
# llama.cpp's and llama-cpp-python's Jinja do not know the tag. They render nothing, so they are dropped.
GENERATION_MARKER = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


def supported_list() -> str:
    return ", ".join(GGUF_ARCHITECTURES)


def template_for_gguf(template: str | None) -> str | None:
    return GENERATION_MARKER.sub("", template) if isinstance(template, str) else template


def _rope(config: dict[str, Any]) -> tuple[float, str | None]:
    """(rope theta, rope type or None for plain rotary) from a config dict (transformers 4 or 5 layout)."""
    parameters = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    theta = parameters.get("rope_theta", config.get("rope_theta", 10000.0))
    kind = parameters.get("rope_type") or scaling.get("rope_type") or scaling.get("type")
    return float(theta), (None if kind in (None, "default") else str(kind))


def architecture_problems(config: dict[str, Any]) -> list[str]:
    """Why this model cannot be written as GGUF by rung, from its config alone (nothing loaded)."""
    names = config.get("architectures") or [config.get("model_type", "unknown")]
    name = names[0]
    if name not in GGUF_ARCHITECTURES:
        return [f"GGUF export supports {supported_list()}; this model is {name}: export --format safetensors "
                "and convert it with llama.cpp's convert_hf_to_gguf.py"]
    problems = []
    _, rope_type = _rope(config)
    if rope_type is not None:
        problems.append(f'rope scaling "{rope_type}" is not written by rung\'s GGUF export (transformers\' GGUF '
                        "loader would not read it back): export --format safetensors and convert it with llama.cpp's "
                        "convert_hf_to_gguf.py")
    if config.get("mlp_bias"):
        problems.append(f"{name} with MLP biases (mlp_bias: true) is not supported by rung's GGUF export")
    if config.get("use_sliding_window") and name == "Qwen2ForCausalLM":
        problems.append("Qwen2 with use_sliding_window: true is not supported by rung's GGUF export")
    return problems


def tokenizer_layout(tokenizer) -> tuple[str, str]:
    """(tokenizer.ggml.model, tokenizer.ggml.pre) for this tokenizer, or a RungError saying why it has none.

    Only byte-level BPE is written: its vocabulary and merges go into the file as they are, and both llama.cpp
    and transformers' GGUF loader rebuild the same tokenizer from them when the pre-tokenizer has a name."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise RungError("GGUF export needs a fast (tokenizer.json) tokenizer; this one is a slow, Python tokenizer")
    spec = json.loads(backend.to_str())
    model, decoder = spec.get("model") or {}, spec.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        kind = "sentencepiece-style BPE (byte fallback)" if model.get("byte_fallback") else model.get("type")
        raise RungError(f"GGUF export writes byte-level BPE tokenizers (GPT-2 style: Llama 3, Qwen2, builtin:tiny); "
                        f"this tokenizer is {kind}: export --format safetensors and convert it with llama.cpp's "
                        "convert_hf_to_gguf.py")
    normalizer = spec.get("normalizer")
    if normalizer and normalizer.get("type") != "NFC":
        raise RungError(f"GGUF export: the tokenizer's normalizer {normalizer.get('type')} has no GGUF equivalent")
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt2", "gpt-2"
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        splits = [s for s in steps if s.get("type") == "Split"]
        if len(splits) == 1 and steps[-1].get("type") == "ByteLevel" and not steps[-1].get("use_regex", True):
            pattern = (splits[0].get("pattern") or {}).get("Regex")
            name = known_splits().get(pattern)
            if name:
                return "gpt2", name
    raise RungError("GGUF export: the tokenizer's pre-tokenizer is not one llama.cpp names (gpt-2, llama-bpe, "
                    "qwen2): export --format safetensors and convert it with llama.cpp's convert_hf_to_gguf.py")


def known_splits() -> dict[str, str]:
    """Split regex -> llama.cpp pre-tokenizer name; the regexes are transformers' own (its GGUF loader's table)."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS as splits

    return {splits["llama-bpe"]: "llama-bpe", splits["qwen2"]: "qwen2"}


def _tokens(tokenizer, n_vocab: int) -> tuple[list[str], list[int]]:
    """Every token by id with its GGUF type (CONTROL for special added tokens, USER_DEFINED for other added
    ones, NORMAL, UNUSED for padding rows of an embedding larger than the vocabulary)."""
    import gguf

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    if max(by_id) >= n_vocab:
        raise RungError(f"the tokenizer has ids up to {max(by_id)} but the model's embedding has {n_vocab} rows")
    tokens, types = [], []
    for index in range(n_vocab):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _permute(weights, n_head: int, n_head_kv: int | None = None):
    """HF's rotate-half q/k rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf.py LlamaModel.permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _encode(name: str, array, quant: str):
    """(data, raw GGML type or None) for one tensor at --quant (module docstring: which tensor gets which type)."""
    import gguf
    import numpy as np

    if array.ndim <= 1:
        return array.astype(np.float32), None
    if quant == "f16":
        return array.astype(np.float16), None
    types = {"bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
             "q4_0": gguf.GGMLQuantizationType.Q4_0}
    qtype = types[quant]
    if quant == "q4_0" and name in ("token_embd.weight", "output.weight"):
        qtype = gguf.GGMLQuantizationType.Q8_0
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if array.shape[-1] % block:
        return array.astype(np.float16), None
    return gguf.quants.quantize(array, qtype), qtype


FILE_TYPES = {"f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0", "q4_0": "MOSTLY_Q4_0"}


def write_gguf(model, tokenizer, path: Path, quant: str, *, name: str) -> dict[str, Any]:
    """Write `model` (a merged HF causal LM) and its tokenizer to one GGUF file at `path`. Returns what went in:
    {"arch", "tensors", "types": {ggml type: count}, "tokenizer_pre", "chat_template"}."""
    import gguf
    import torch

    config = model.config
    config_dict = config.to_dict()
    problems = architecture_problems(config_dict)
    if problems:
        raise RungError(problems)
    arch, permute = GGUF_ARCHITECTURES[config_dict["architectures"][0]]
    tokenizer_model, pre = tokenizer_layout(tokenizer)
    n_vocab = model.get_input_embeddings().weight.shape[0]
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    theta, _ = _rope(config_dict)

    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[quant]))
    if quant in ("q8_0", "q4_0"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # tokenizer: vocabulary and types from the tokenizer itself; merges, special ids and add_* flags through
    # gguf's SpecialVocab, read from the tokenizer's saved files, as convert_hf_to_gguf.py does
    tokens, types = _tokens(tokenizer, n_vocab)
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory(prefix="rung-gguf-vocab-") as folder:
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(Path(folder), load_merges=True, n_vocab=len(tokens))
    special.chat_template = template_for_gguf(tokenizer.chat_template)
    probe = tokenizer("a")["input_ids"]
    # what the HF tokenizer really does decides llama.cpp's add_bos/add_eos (absent, llama.cpp guesses by type)
    special.add_special_token["bos"] = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
    special.add_special_token["eos"] = tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id]
    special.add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    counts: Counter = Counter()
    with torch.no_grad():
        for hf_name, tensor in model.state_dict().items():
            if hf_name == "lm_head.weight" and tied:
                continue
            new_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if new_name is None:
                raise RungError(f"GGUF export: no GGUF name for the tensor {hf_name} of this {arch} model")
            array = tensor.detach().to("cpu", torch.float32).numpy()
            if permute and re.search(r"\.q_proj\.(weight|bias)$", hf_name):
                array = _permute(array, n_head, n_head)
            elif permute and re.search(r"\.k_proj\.(weight|bias)$", hf_name):
                array = _permute(array, n_head, n_kv)
            data, raw_type = _encode(new_name, array, quant)
            writer.add_tensor(new_name, data, raw_dtype=raw_type)
            counts[raw_type.name if raw_type is not None else ("F16" if data.dtype.name == "float16" else "F32")] += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"arch": arch, "tensors": sum(counts.values()), "types": dict(counts), "tokenizer_pre": pre,
            "chat_template": special.chat_template}
