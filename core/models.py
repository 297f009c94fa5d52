"""Model loading shared by every engine, and `builtin:tiny`, the offline toy base model.

A model spec is one of:
- `builtin:tiny`: a ~1.3M-parameter Llama built locally from a config, with a byte-level BPE tokenizer trained
  locally on the Python standard library's help text (pydoc_data.topics, PSF licence) and a ChatML chat
  template. Seeded and cached under $RUNG_CACHE (default ~/.cache/rung), so it is the same every time.
  It is a toy for offline demos and tests: random weights, no knowledge.
- `builtin:tiny-base`: builtin:tiny after a short, cached pretraining, for the demo. Building it is training,
  which lives in trainers/ (a layer above this one): rung.trainers registers its builder here on import
  (register_builtin), and the runner and the CLI import rung.trainers.
- a local folder (config.json + safetensors weights),
- a GGUF: a `.gguf` file, a folder holding exactly one, `ollama:NAME[:TAG]` (Ollama's local store) or a named
  real model (`smollm2-135m-instruct`); converted once to a cached safetensors folder (core/gguf_in.py,
  core/gguf_convert.py), or
- a Hugging Face hub id, fetched by transformers as usual (the only case that touches the network).

Security by default: safetensors only, `trust_remote_code` off unless the caller passes True.
Heavy imports live inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from rung.core.errors import RungError
from rung.core.model_cache import CHATML_TEMPLATE, cache_root, cached_build, spec_key  # noqa: F401 (re-exported)
from rung.core.vocab import BUILTIN_PREFIX

BUILTIN_MODELS = {
    "builtin:tiny": "random-weight toy Llama (~1.3M parameters), for tests and offline plumbing",
    "builtin:tiny-base": "builtin:tiny after a short pretraining on Python's help text: writes English-ish text, "
                         "knows no task (the demo's stage 1)",
}

# Everything that decides the built model's bytes: change any of it and the cache key changes.
TINY_SPEC: dict[str, Any] = {
    "version": 1,
    "seed": 0,
    "vocab_size": 4096,
    "special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "model": {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
    },
    "chat_template": CHATML_TEMPLATE,
}


def builtin_tiny_path() -> Path:
    """The cached built-in tiny model's folder, built on first use (~4 s on 2 cores)."""
    return cached_build(cache_root() / f"builtin-tiny-{spec_key(TINY_SPEC)}", _build_tiny, "tiny")


def _tokenizer_corpus() -> list[str]:
    """Plain English text that ships with Python itself: the standard library's help topics."""
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return [topics[name] for name in sorted(topics)]


def _build_tiny(folder: Path) -> None:
    import json  # here, not at the top: `rung advise` imports this module and never builds a model

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    spec = TINY_SPEC
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec["vocab_size"],
        special_tokens=spec["special_tokens"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",     # end of an assistant turn: generation stops here
        pad_token="<|endoftext|>",  # also the document separator for continued pretraining
        additional_special_tokens=["<|im_start|>"],
        model_max_length=spec["model"]["max_position_embeddings"],
    )
    tokenizer.chat_template = spec["chat_template"]

    torch.manual_seed(spec["seed"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **spec["model"],
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)  # safetensors
    tokenizer.save_pretrained(folder)
    (folder / "RUNG_BUILTIN.md").write_text(
        "builtin:tiny — a toy Llama with random weights, built locally by rung for offline demos and tests.\n"
        f"spec: {json.dumps({k: v for k, v in spec.items() if k != 'chat_template'})}\n"
    )


# builtin name -> a function that builds it (cached) and returns its folder; filled by register_builtin.
BUILTIN_BUILDERS: dict[str, Callable[[], Path]] = {}


def register_builtin(name: str, builder: Callable[[], Path]) -> None:
    """Let a higher layer supply a built-in model that needs more than this module has (training)."""
    BUILTIN_BUILDERS[name] = builder


QLORA_NEEDS = "adapter qlora needs a CUDA GPU (bitsandbytes 4-bit)"


def qlora_problem(cuda_available: bool | None = None) -> str | None:
    """Why QLoRA cannot run here (no CUDA GPU, no bitsandbytes), or None. The one QLoRA check."""
    import importlib.util

    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        return f"{QLORA_NEEDS}; this machine has none"
    if importlib.util.find_spec("bitsandbytes") is None:
        return f"{QLORA_NEEDS}: pip install bitsandbytes"
    return None


def looks_like_path(spec: str) -> bool:
    """A spec written as a path (./x, /x, ~/x, a/b/c) is never a hub id: missing means an error, not a download."""
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or os.sep + os.sep in spec


def is_builtin(spec: str) -> bool:
    return str(spec).startswith(BUILTIN_PREFIX)


def resolve_model(spec: str | os.PathLike) -> str:
    """A spec → what from_pretrained takes: builtin or GGUF → a cached folder; a local folder → its path; else a
    hub id.

    A spec that looks like a path (./x, /x, ~/x) but does not exist is an error, not a hub lookup.
    """
    spec = str(spec)
    if is_builtin(spec):
        name = spec[len(BUILTIN_PREFIX):]
        if name == "tiny":
            return str(builtin_tiny_path())
        if name in BUILTIN_BUILDERS:
            return str(BUILTIN_BUILDERS[name]())
        if f"{BUILTIN_PREFIX}{name}" in BUILTIN_MODELS:
            raise RungError(f'built-in model "{spec}" is built by rung.trainers, which is not loaded here: '
                            f'import rung.trainers first (pip install "rung[train]")')
        raise RungError(f'unknown built-in model "{spec}" (available: {", ".join(BUILTIN_MODELS)})')
    from rung.core.gguf_in import gguf_source

    gguf = gguf_source(spec)
    if gguf is not None:
        from rung.core.gguf_convert import converted_folder

        return str(converted_folder(gguf))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise RungError(f"{spec}: not a model folder (no config.json or adapter_config.json) and no GGUF "
                            "(no .gguf file)")
        return str(path)
    if looks_like_path(spec):
        raise RungError(f"model path {spec} does not exist")
    return spec


def _hub_error(spec: str, error: Exception) -> RungError:
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    hint = (" HF_HUB_OFFLINE is set: download it first with `huggingface-cli download "
            f"{spec}` on a machine with network, or pass a local folder." if offline
            else " Check the id, your network, and `huggingface-cli login` for gated models.")
    return RungError(f'cannot load model "{spec}": {type(error).__name__}: {str(error).splitlines()[0]}.{hint}')


def load_tokenizer(spec: str, *, trust_remote_code: bool = False):
    """AutoTokenizer with a pad token and a chat template (ChatML when the model has none)."""
    from transformers import AutoTokenizer

    resolved = resolve_model(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise _hub_error(str(spec), error) from None
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
        for token in ("<|im_start|>", "<|im_end|>"):
            if token not in tokenizer.get_vocab():
                tokenizer.add_special_tokens({"additional_special_tokens": [token]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(
    spec: str,
    *,
    trust_remote_code: bool = False,
    dtype: Any = None,
    quantization: str | None = None,
    device_map: Any = None,
    quant_storage: Any = None,
):
    """Load a causal LM and its tokenizer from a hub id, a local folder or builtin:tiny. Safetensors only.

    quantization: None or "4bit" (QLoRA: bitsandbytes NF4 with double quantization, bf16 compute), CUDA only.
    quant_storage: the dtype the 4-bit weights are packed in (bitsandbytes' default uint8 when None); FSDP and
    ZeRO-3 shard only floating-point tensors, so a sharded QLoRA run stores them as bfloat16 (trainers/launch.py).
    """
    check_local_model(spec)  # before torch: a damaged folder is one line, not a traceback after allocating
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if quantization == "4bit":
        problem = qlora_problem()
        if problem:
            raise RungError(f"{problem}: use adapter lora on CPU" if "none" in problem else problem)
        from transformers import BitsAndBytesConfig

        storage = getattr(torch, quant_storage) if isinstance(quant_storage, str) else quant_storage
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            **({"bnb_4bit_quant_storage": storage} if storage is not None else {}),
        )
        kwargs.setdefault("device_map", {"": torch.cuda.current_device()})
    elif quantization is not None:
        raise RungError(f'unknown quantization "{quantization}" (use 4bit)')
    if device_map is not None:
        kwargs["device_map"] = device_map
    tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code)
    resolved = resolve_model(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved, **kwargs)
    except (OSError, ValueError) as error:
        raise _hub_error(str(spec), error) from None
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))  # ChatML tokens added to a tokenizer that had none
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# ---------------------------------------------------------------------------------------------- inference

def adapter_base(adapter_dir: Path) -> str:
    """The base model an adapter was trained on: rung's spec when we wrote the folder, else PEFT's record."""
    import json

    from rung.core.fileio import read_text, read_yaml

    resolved = adapter_dir / "resolved_config.yaml"
    if resolved.exists():
        config = read_yaml(resolved, what="run settings") or {}
        settings = config.get("settings") if isinstance(config, dict) else None
        base = (config.get("adapter_base_model") if isinstance(config, dict) else None) or \
            (settings.get("model_name_or_path") if isinstance(settings, dict) else None)
        if isinstance(base, str) and base:
            return base
    try:
        config = json.loads(read_text(adapter_dir / "adapter_config.json", what="adapter config"))
    except ValueError as error:
        raise RungError(f"{adapter_dir}/adapter_config.json: not valid JSON ({error})") from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise RungError(f"{adapter_dir}/adapter_config.json names no base model (base_model_name_or_path)")
    return str(base)


def is_adapter_dir(spec: str | Path) -> bool:
    return Path(str(spec)).expanduser().is_dir() and (Path(str(spec)).expanduser() / "adapter_config.json").exists()


def check_local_model(spec: str | os.PathLike) -> None:
    """A local model or adapter folder's safetensors headers and config types (core/safetensors_check.py),
    checked before anything loads: one RungError naming the file, never a loader's traceback."""
    if is_builtin(str(spec)):
        return
    folder = Path(str(spec)).expanduser()
    if folder.is_dir():
        from rung.core.safetensors_check import model_folder_problems

        problems = model_folder_problems(folder)
        if problems:
            raise RungError(problems)


def load_for_inference(spec: str, *, trust_remote_code: bool = False, is_trainable: bool = False):
    """(model, tokenizer) from a model folder, hub id, builtin:tiny, or a PEFT adapter folder (base + adapter)."""
    check_local_model(spec)
    if is_adapter_dir(spec):
        from peft import PeftModel

        folder = Path(spec).expanduser()
        base = adapter_base(folder)
        model, tokenizer = load_model_and_tokenizer(base, trust_remote_code=trust_remote_code)
        if (folder / "tokenizer_config.json").exists():
            tokenizer = load_tokenizer(str(folder), trust_remote_code=trust_remote_code)
        model = PeftModel.from_pretrained(model, str(folder), is_trainable=is_trainable)
    else:
        model, tokenizer = load_model_and_tokenizer(spec, trust_remote_code=trust_remote_code)
    import torch

    if torch.cuda.is_available() and not hasattr(model, "hf_device_map"):
        model.to("cuda")
    if not is_trainable:
        model.eval()
    return model, tokenizer


def quiet_libraries() -> None:
    """Keep the console for rung's lines: no progress bars from datasets, no info logs from transformers."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", message=".*(gradient_checkpointing|activation_checkpointing).*",
                            category=FutureWarning)
    try:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
