"""What RUN_OR_MODEL names, checked before anything loads; then the model (a LoRA adapter merged in memory), its
tokenizer and the held-out prompts the export is checked on.

RUN_OR_MODEL is a rung run folder (`rung train sft|dpo|cpt --out DIR`), a merged or full-weight model folder,
a hub id or builtin:tiny. The prompts are the run's held-out rows (its eval file, or the same seeded split
`rung train` made), else BUILTIN_PROMPTS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rung.core.errors import RungError

Prompt = Any  # a conversation (list of {"role", "content"}) or, for plain-text rows, a string

MAX_PROMPTS = 8  # held-out prompts the reload check runs (each: the prompt plus up to 24 greedy tokens)

# Used when the source is not a run folder, or the run held nothing out (eval_fraction 0, no eval file).
BUILTIN_PROMPTS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a helpful assistant. Answer in one sentence."},
     {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "Write a SQL query that counts the rows of the table orders."}],
    [{"role": "user", "content": "Translate to German: \"The train leaves at 9:30.\""}],
    [{"role": "user", "content": "List three prime numbers."},
     {"role": "assistant", "content": "2, 3 and 5."},
     {"role": "user", "content": "And three more, in {curly braces}?"}],
    [{"role": "user", "content": "def add(a, b):\n    return a + b\n\nWhat does this function do?"}],
]


@dataclass
class Source:
    spec: str                 # as the user wrote it
    description: str          # one line for the console and the report
    model: Any
    tokenizer: Any
    prompts: list[Prompt] = field(default_factory=list)
    prompts_from: str = ""
    run_dir: Path | None = None


def check_source(spec: str) -> tuple[str, str | None]:
    """(spec with a local folder made absolute, problem or None). Loads nothing."""
    from rung.core.inputs import check_model_spec

    spec_out, problem = check_model_spec(spec, Path.cwd(), "RUN_OR_MODEL")
    if problem is None and Path(str(spec_out)).expanduser().is_dir():
        folder = Path(str(spec_out))
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            problem = f"RUN_OR_MODEL: {folder} holds no model (no config.json or adapter_config.json)"
    return str(spec_out), problem


def model_config(spec: str, *, trust_remote_code: bool = False) -> dict[str, Any]:
    """config.json of the model a spec names (of the base model for an adapter folder), without its weights."""
    from rung.core.models import adapter_base, is_adapter_dir, resolve_model

    target = resolve_model(adapter_base(Path(spec)) if is_adapter_dir(spec) else spec)
    path = Path(target) / "config.json"
    if path.is_file():
        from rung.core.fileio import read_text

        try:
            return json.loads(read_text(path, what="model config"))
        except ValueError as error:
            raise RungError(f"{path}: not valid JSON ({error})") from None
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(target, trust_remote_code=trust_remote_code).to_dict()
    except (OSError, ValueError) as error:
        raise RungError(f'cannot read the config of "{target}": {str(error).splitlines()[0]}') from None


def load_source_tokenizer(spec: str, *, trust_remote_code: bool = False):
    """The tokenizer load_source will use (the run's own for an adapter folder that has one), without weights."""
    from rung.core.models import adapter_base, is_adapter_dir, load_tokenizer

    if is_adapter_dir(spec) and not (Path(spec) / "tokenizer_config.json").is_file():
        spec = adapter_base(Path(spec))
    return load_tokenizer(spec, trust_remote_code=trust_remote_code)


def load_source(spec: str, *, trust_remote_code: bool = False, prompts: bool = True) -> Source:
    """The model a spec names with any LoRA adapter folded in (PEFT merge_and_unload, in the base's dtype)."""
    from rung.core.models import adapter_base, is_adapter_dir, load_for_inference

    model, tokenizer = load_for_inference(spec, trust_remote_code=trust_remote_code)
    if is_adapter_dir(spec):
        if getattr(model, "is_loaded_in_4bit", False) or getattr(model.base_model, "is_loaded_in_4bit", False):
            raise RungError("cannot merge into a 4-bit model")
        model = model.merge_and_unload()
        description = f"LoRA adapter {spec} merged into {adapter_base(Path(spec))}"
    else:
        description = f"model {spec}"
    model.eval()
    run_dir = Path(spec) if (Path(spec) / "resolved_config.yaml").is_file() else None
    if not prompts:
        return Source(spec=spec, description=description, model=model, tokenizer=tokenizer, run_dir=run_dir)
    prompts, where = held_out_prompts(run_dir) if run_dir else ([], "")
    if not prompts:
        prompts, where = list(BUILTIN_PROMPTS), f"rung's {len(BUILTIN_PROMPTS)} built-in prompts" + (
            f" ({where})" if where else "")
    return Source(spec=spec, description=description, model=model, tokenizer=tokenizer,
                  prompts=prompts[:MAX_PROMPTS], prompts_from=where, run_dir=run_dir)


def held_out_prompts(run_dir: Path) -> tuple[list[Prompt], str]:
    """The prompts of a run's held-out rows, or ([], why not). The split is the one `rung train` made: the eval
    file, else data split with the run's eval_fraction and seed (trainers/data.py split_examples)."""
    from rung.core.fileio import read_yaml
    from rung.trainers.common import prompt_of
    from rung.trainers.data import load_train_eval

    config = read_yaml(run_dir / "resolved_config.yaml", what="run settings")
    if not isinstance(config, dict):
        return [], "the run's resolved_config.yaml is not a mapping"
    kind = {"sft": "sft", "dpo": "dpo"}.get(str(config.get("pipeline")))
    if kind is None:
        return [], f"a {config.get('pipeline') or 'non-chat'} run has no held-out chat rows"
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}

    def find(value: Any) -> Path | None:
        if not isinstance(value, str) or not value:
            return None
        for candidate in (Path(value).expanduser(), run_dir / value, run_dir.parent / value):
            if candidate.is_file():
                return candidate
        return None

    data, eval_data = find(config.get("data")), find(config.get("eval_data"))
    if data is None and eval_data is None:
        return [], f"the run's data file {config.get('data')} is not here"
    try:
        _, held, split = load_train_eval(data or eval_data, eval_data, kind,
                                         float(settings.get("eval_fraction") or 0), int(settings.get("seed") or 42))
    except RungError as error:
        return [], f"the run's data could not be read: {error.message.splitlines()[0]}"
    if not held:
        return [], "the run held out no rows"
    prompts = [prompt_of(example)[0] for example in held]
    return prompts, f"{min(len(prompts), MAX_PROMPTS)} held-out rows of the run ({split})"
