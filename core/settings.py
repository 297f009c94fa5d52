"""Every engine's settings: one dataclass each, TRL's own field names where TRL has the field.

Pure Python (no torch): the advisor writes these into plan.yaml and `rung run` checks them before any heavy
import. Each field's help lives in its metadata (`setting(..., help=...)`); a field with a `flag` becomes a
`rung train` option (cli/options.py), so no flag or help text is written twice. Resolution, the one path for
`rung train` and `rung run` alike, is core/resolve.py: default < plan base_model/adapter < step settings <
--config/flags < --set. Each training dataclass becomes a TRL config through one builder function in its
pipeline file (trainers/sft.py, dpo.py, cpt/); RUNG_ONLY_FIELDS are not passed on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rung.core.vocab import ADAPTERS, MAX_NEW_TOKENS

MAX_CONCURRENCY = 256  # endpoint requests in flight; core/endpoint.py refuses more


def setting(default: Any = None, help: str = "", *, flag: str | None = None, factory: Any = None,
            choices: tuple[str, ...] | None = None, minimum: float | None = None, maximum: float | None = None,
            gt: float | None = None, lt: float | None = None, also: tuple[Any, ...] = (), metavar: str | None = None) -> Any:
    """A dataclass field with its help text and its flag ("--name" or "--on/--off"; default: the field's name),
    with the metavar --help shows for its value.

    The range, checked by the one resolve (core/resolve.py) before anything is written: minimum/maximum are
    inclusive, gt/lt exclusive, `also` lists values allowed outside the range (max_steps -1). Floats must be
    finite; ints stay below 2**31 unless a maximum says otherwise."""
    metadata = {"help": help, "flag": flag, "choices": choices, "minimum": minimum, "maximum": maximum,
                "gt": gt, "lt": lt, "also": also, "metavar": metavar}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# ---------------------------------------------------------------------------------------------- training


@dataclass
class CommonSettings:
    # --- model (TRL ModelConfig names) ---
    model_name_or_path: str = setting("builtin:tiny", "Base model: hub id, local folder, builtin:tiny, a .gguf file, "
                                      "ollama:NAME[:TAG], smollm2-135m-instruct (or, for dpo, an SFT output "
                                      "folder).", flag="--base-model")
    trust_remote_code: bool = setting(False, "Allow the model's own code to run (off by default: remote code runs "
                                      "on your machine).", flag="--trust-remote-code")
    # --- adapter: lora | qlora | full (rung); LoRA fields use TRL ModelConfig names ---
    adapter: str = setting("lora", "lora (default), qlora (4-bit base, CUDA only) or full weights.",
                           flag="--adapter", choices=ADAPTERS)
    lora_r: int = setting(16, "LoRA rank.", flag="--lora-r", minimum=1)
    lora_alpha: int = setting(32, "LoRA alpha (scale = alpha / r).", flag="--lora-alpha", minimum=1)
    lora_dropout: float = setting(0.05, "Dropout on the LoRA path.", minimum=0, lt=1)
    lora_target_modules: str | list[str] = setting("all-linear", "Modules LoRA wraps; every linear layer by "
                                                   "default (the QLoRA paper: all layers beat attention-only).")
    lora_modules_to_save: list[str] | None = setting(None, "Modules trained in full beside LoRA, e.g. "
                                                     "[embed_tokens, lm_head] for new vocabulary.")
    # --- optimisation (transformers TrainingArguments names) ---
    num_train_epochs: float = setting(3.0, "Passes over the training data (num_train_epochs).", flag="--epochs",
                                      minimum=0)  # above 0 unless max_steps is set (core/resolve.py)
    max_steps: int = setting(-1, "Stop after this many optimizer steps (overrides --epochs); -1: epochs decide.",
                             flag="--max-steps", minimum=1, also=(-1,))
    per_device_train_batch_size: int = setting(4, "Examples per device per step (per_device_train_batch_size).",
                                               flag="--batch-size", minimum=1)
    per_device_eval_batch_size: int = setting(4, "Examples per device per eval step.", minimum=1)
    gradient_accumulation_steps: int = setting(1, "Micro-batches summed per optimizer step.",
                                               flag="--gradient-accumulation-steps", minimum=1)
    learning_rate: float = setting(2e-4, "Peak learning rate (LoRA rate; full fine-tuning wants ~1e-5).",
                                   flag="--learning-rate", gt=0)
    lr_scheduler_type: str = setting("cosine", "Learning-rate schedule (transformers names: cosine, linear, ...).")
    warmup_ratio: float = setting(0.03, "Share of all steps spent warming up the learning rate.",
                                 minimum=0, lt=1)
    weight_decay: float = setting(0.0, "AdamW weight decay.", minimum=0)
    max_grad_norm: float = setting(1.0, "Gradient clipping norm (0: none).", minimum=0)
    gradient_checkpointing: bool = setting(False, "Recompute activations to save memory (~30% slower).",
                                           flag="--gradient-checkpointing/--no-gradient-checkpointing")
    bf16: bool | None = setting(None, "bf16 mixed precision; unset: on when the GPU supports it, off on CPU.")
    seed: int = setting(42, "Random seed (data order, LoRA init, eval split).", flag="--seed", minimum=0,
                        maximum=2**32 - 1)
    # --- evaluation, logging, checkpoints ---
    eval_fraction: float = setting(0.1, "Held-out share when no --eval file is given (0: none).",
                                   flag="--eval-fraction", minimum=0, lt=1)
    eval_strategy: str = setting("steps", "When to evaluate: steps, epoch or no.",
                                 choices=("steps", "epoch", "no"))
    eval_steps: int = setting(50, "Evaluate every N steps.", flag="--eval-steps", minimum=1)
    logging_steps: int = setting(10, "Log the loss every N steps.", flag="--logging-steps", minimum=1)
    save_strategy: str = setting("steps", "When to write checkpoints: steps, epoch or no.",
                                 choices=("steps", "epoch", "no"))
    save_steps: int = setting(50, "Write a checkpoint every N steps (for --resume).", flag="--save-steps",
                         minimum=1)
    save_total_limit: int | None = setting(2, "Checkpoints kept (older ones are deleted); unset: all.",
                                          minimum=1)


@dataclass
class ReplaySettings:
    """Replay: general rows mixed into the task rows so a skill the model had is not forgotten (SFT, GRPO, CPT).
    trainers/replay.py does the mixing; the arithmetic is there."""

    replay: str | None = setting(None, "General data mixed into training against forgetting: a file (SFT/GRPO: chat "
                                 "or prompt/completion rows; CPT: text rows or .txt/.md) or `builtin` (chat rows made "
                                 "from Python's help topics, offline, PSF licence).", flag="--replay")
    replay_ratio: float = setting(0.0, "Share of the training rows (CPT: of the corpus text, by bytes) that are replay: "
                                  "N task rows and ratio R add round(N*R/(1-R)) replay rows.",
                                  flag="--replay-ratio", minimum=0, lt=1)


@dataclass
class SFTSettings(ReplaySettings, CommonSettings):
    max_length: int | None = setting(1024, "Token limit per example; longer ones are cut (reported).",
                                     flag="--max-length", minimum=1)
    packing: bool = setting(False, "Pack several examples per sequence (fewer pad tokens).",
                            flag="--packing/--no-packing")
    assistant_only_loss: bool | None = setting(None, "Loss on assistant tokens only (default: on for chat rows when "
                                               "the template has {% generation %} markers).",
                                               flag="--assistant-only-loss/--all-tokens-loss")
    completion_only_loss: bool | None = setting(None, "Loss on the completion only, for prompt/completion rows.")
    eos_token: str | None = setting(None, "End-of-sequence token; default: the chat template's end-of-turn token.")


@dataclass
class DPOSettings(CommonSettings):
    learning_rate: float = setting(5e-5, "Peak learning rate (LoRA DPO; full-weight DPO wants ~5e-7, the DPO "
                                   "paper 1e-6).", flag="--learning-rate", gt=0)
    num_train_epochs: float = setting(1.0, "Passes over the preference pairs (num_train_epochs).", flag="--epochs",
                                      minimum=0)
    beta: float = setting(0.1, "DPO beta: how far the policy may move from the reference.", flag="--beta",
                          gt=0)
    loss_type: str = setting("sigmoid", "TRL DPO loss (sigmoid, ipo, ...).", flag="--loss-type")
    max_length: int | None = setting(1024, "Token limit per prompt + answer; longer ones are cut (reported).",
                                     flag="--max-length", minimum=1)


@dataclass
class GRPOSettings(ReplaySettings, CommonSettings):
    """GRPO (TRL's GRPOTrainer): the task's own metric is the reward. Batch arithmetic, TRL's: a micro-batch holds
    per_device_train_batch_size completions, num_generations per prompt, so 8 completions / 4 generations = 2
    prompts per micro-batch; the generation batch (micro-batch x processes x accumulation) must divide by
    num_generations."""

    learning_rate: float = setting(1e-5, "Peak learning rate (LoRA GRPO; full-weight GRPO wants ~1e-6, TRL's "
                                   "default).", flag="--learning-rate", gt=0)
    num_train_epochs: float = setting(1.0, "Passes over the prompts (num_train_epochs).", flag="--epochs", minimum=0)
    per_device_train_batch_size: int = setting(8, "Completions per device per step (not prompts: num_generations "
                                               "of them share a prompt).", flag="--batch-size", minimum=1)
    eval_strategy: str = setting("no", "GRPO's own eval generates num_generations answers per prompt; off by default "
                                 "(the gate scores the held-out rows after training).",
                                 choices=("steps", "epoch", "no"))
    logging_steps: int = setting(5, "Log the reward and loss every N steps.", flag="--logging-steps", minimum=1)
    num_generations: int = setting(8, "Completions sampled per prompt (the group GRPO compares); at least 2.",
                                   flag="--num-generations", minimum=2)
    max_completion_length: int = setting(256, "Most tokens generated per completion.",
                                         flag="--max-completion-length", minimum=1, maximum=MAX_NEW_TOKENS)
    temperature: float = setting(1.0, "Sampling temperature of the completions (above 0: the group must differ).",
                                 flag="--temperature", gt=0)
    beta: float = setting(0.0, "KL coefficient against the starting model; 0 (TRL's default) loads no reference "
                          "model.", flag="--beta", minimum=0)
    metric: str | None = setting(None, "The reward: a metric of engines/metrics.py (exact_match, json_schema, regex, "
                                 "...), the one the probe and the gate score with; default: chosen from the rows "
                                 "as the gate chooses it.", flag="--metric")
    metric_options: dict | None = setting(None, "Options of the metric, e.g. {pattern: '^SELECT'} for regex or "
                                          "{schema: {...}} for json_schema.")
    use_vllm: bool = setting(False, "Generate with vLLM (TRL's use_vllm, colocated on the training GPU); needs vllm "
                             "installed and CUDA.", flag="--use-vllm/--no-use-vllm")
    vllm_mode: str = setting("colocate", "colocate (vLLM inside the training process) or server (`trl vllm-serve` "
                             "running beside it).", choices=("colocate", "server"))


@dataclass
class CPTSettings(ReplaySettings, CommonSettings):
    adapter: str = setting("full", "full weights (default for CPT), lora, or qlora (4-bit base, CUDA only).",
                           flag="--adapter", choices=("full", "lora", "qlora"))
    learning_rate: float = setting(1e-4, "Peak learning rate.", flag="--learning-rate", gt=0)
    num_train_epochs: float = setting(1.0, "Passes over the corpus (num_train_epochs).", flag="--epochs",
                                      minimum=0)
    max_length: int = setting(1024, "Block size: documents are packed into blocks of this many tokens "
                              "(at least 2: one token predicts the next).", flag="--max-length", minimum=2)
    eos_token: str | None = setting(None, "Token between documents; default: the tokenizer's EOS (never a chat "
                                    "end-of-turn token, which would teach the model to stop early).")
    general_ppl_warn_ratio: float = setting(1.2, "Warn when general-text perplexity rises past this multiple of "
                                            "its start.", flag="--general-ppl-warn-ratio", minimum=1)
    torch_compile: bool = setting(False, "Compile the model with torch.compile (GPU; first steps are slower).",
                                  flag="--torch-compile")
    gradient_checkpointing: bool | None = setting(None, "Recompute activations to save memory (~30% slower); "
                                                  "default: on with a GPU, off on CPU.",
                                                  flag="--gradient-checkpointing/--no-gradient-checkpointing")
    max_eval_samples: int = setting(64, "Held-out blocks per eval slice, domain and general (as in run_clm.py).",
                                    flag="--max-eval-samples", minimum=1)


# Fields that are rung's own (model loading, adapters, splits, the forgetting monitor): not TRL config fields.
RUNG_ONLY_FIELDS = frozenset(
    {"model_name_or_path", "trust_remote_code", "adapter", "lora_r", "lora_alpha", "lora_dropout",
     "lora_target_modules", "lora_modules_to_save", "eval_fraction", "general_ppl_warn_ratio", "eos_token_id",
     "max_eval_samples", "replay", "replay_ratio", "metric", "metric_options"}
)


# ---------------------------------------------------------------------------------------------- other engines

# Which library answers a local model (core/generation.py open_chat_model). One declaration: GateSettings and
# PromptingSettings carry it, and `rung probe|gate --backend` take its choices and help from here.
BACKENDS = ("auto", "transformers", "llama.cpp")
BACKEND_HELP = ("Who answers a local model: auto (llama.cpp for a GGUF spec when llama-cpp-python is installed, "
                "else transformers), transformers, or llama.cpp (GGUF specs only). A trained LoRA or merged "
                "folder always answers in transformers.")


@dataclass
class BiggerModelSettings:
    gpu: str | None = setting(None, "A GPU from advisor/gpus.yaml (sets memory, bandwidth and a list price).")
    gpu_memory_gb: float | None = setting(None, "Memory per GPU; default: the answers' gpu_memory_gb.",
                                           gt=0)
    gpus: int | None = setting(None, "GPUs; default: the answers' gpu_count, else 1.", minimum=1)
    context_tokens: int = setting(4096, "Tokens per sequence the KV cache must hold.", minimum=1)
    batch: int = setting(8, "Sequences served at once (KV cache and throughput scale with it).",
                       minimum=1)
    lora_seq_len: int = setting(2048, "Sequence length for the LoRA / QLoRA training estimate.",
                               minimum=1)
    usd_per_gpu_hour: float | None = setting(None, "Your rate; default: the named GPU's list price.",
                                                minimum=0)
    kind: str = setting("chat", "chat | base | any.", choices=("chat", "base", "any"))
    licence: str = setting("any", "any | permissive (apache-2.0, mit).", choices=("any", "permissive"))
    min_context: int = setting(0, "Smallest context length a candidate must have.", minimum=0)
    families: list[str] = setting(help="Model families to consider, e.g. [Qwen2.5, Llama 3]; empty: all.",
                                  factory=list)
    candidates: list[str] = setting(help="Local models to evaluate side by side on data.eval.", factory=list)
    include_base_model: bool = setting(True, "Also evaluate the plan's base_model (the model you have today).")
    max_new_tokens: int = setting(64, "Most tokens generated per answer.", minimum=1, maximum=MAX_NEW_TOKENS)
    max_eval_examples: int = setting(50, "Rows of data.eval scored.", minimum=1)
    batch_size: int = setting(8, "Prompts generated at once.", minimum=1)
    trust_remote_code: bool = setting(False, "Allow the models' own code to run.")


@dataclass
class ManualSettings:
    task: str | None = setting(None, "What to do; the step's description when unset.")
    done_when: str | None = setting(None, "How to know it is done.")
    owner: str | None = setting(None, "Who does it.")


@dataclass
class RetrievalSettings:
    """How `rung rag query | answer | eval` (and a rag_eval step) rank chunks (rag/hybrid.py)."""

    retrieval: str = setting("dense", "dense: the embedder's cosine alone; hybrid: fused with keyword search (BM25 "
                             "in a folder, full text in PostgreSQL) by weighted reciprocal rank. Dense stays the "
                             "default: hybrid did not win on the dev sets (BENCHMARKS.md).", flag="--retrieval",
                             choices=("dense", "hybrid"))
    # 0.25: the best of 0.25 / 0.5 / 1 averaged over both stores and both dev sets (benchmarks/bench_hybrid.py,
    # BENCHMARKS.md); 1 (plain RRF) was the worst in the database, whose ts_rank_cd has no IDF.
    keyword_weight: float = setting(0.25, "Hybrid: the keyword ranking's weight in the fusion, dense's being 1 "
                                    "(1: plain RRF).", flag="--keyword-weight", minimum=0, maximum=10)
    rrf_k: int = setting(60, "Hybrid: the reciprocal-rank constant k in 1/(k + rank) (60 as in Cormack et al.).",
                         flag="--rrf-k", minimum=1, maximum=10_000)


@dataclass
class RagIndexSettings:
    """How `rung rag index` and a rag_index step chunk, embed and store documents (rag/ingest.py). On the command
    line an unset flag keeps what an existing index has; a plan step gives every value."""

    chunk_tokens: int = setting(0, "Chunk size in the embedder's word pieces, heading trail included; 0 = 128, or the "
                                "model's limit if lower (at most 254 for MiniLM).", flag="--chunk-tokens", minimum=0)
    overlap: int = setting(16, "Word pieces shared by neighbouring chunks.", flag="--overlap", minimum=0)
    model: str | None = setting(None, "Embedding model (sentence-transformers id or folder); default: the packaged "
                                "all-MiniLM-L6-v2 (offline).", flag="--model")
    index_type: str = setting("auto", "Exact flat search, HNSW, or auto: HNSW from 50,000 chunks.",
                              flag="--index-type", choices=("auto", "flat", "hnsw"))
    batch_size: int = setting(32, "Chunks embedded at once.", flag="--batch-size", minimum=1)
    follow_symlinks: bool = setting(False, "Follow symbolic links that lead out of a source folder (default: skip "
                                    "them, with a reason).", flag="--follow-symlinks")
    index: str | None = setting(None, "Where the index lives: a folder, or postgresql://USER@HOST:PORT/DB?table=NAME "
                                "(also postgresql:///DB?host=/socket/dir&table=NAME; the password comes from "
                                "PGPASSWORD, ~/.pgpass or a service file, never the URL); in a plan, default: the "
                                "step's run folder.", flag="--index", metavar="FOLDER|URL")


@dataclass
class RagEvalSettings(RetrievalSettings):
    """The depth (10) and the metrics are fixed so runs compare; the target says what is good enough."""

    target: float = setting(0.8, "recall@10 that counts as good enough; below it the report says what to do "
                            "before climbing.", minimum=0, maximum=1)


@dataclass
class EndpointClientSettings:
    """How probe, gate (and the judge) reach the model that answers: an OpenAI-compatible endpoint for openai:NAME,
    or a local backend."""

    api_base: str | None = setting(None, "Base URL of the OpenAI-compatible endpoint for an openai:NAME model, e.g. "
                                   "http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL).", flag="--api-base", metavar="URL")
    api_key_env: str = setting("OPENAI_API_KEY", "Environment variable that holds the endpoint's API key (the key is "
                               "never written anywhere).", flag="--api-key-env", metavar="VAR")
    concurrency: int = setting(4, "Endpoint requests in flight at once; for llama.cpp, answers generated at once "
                               "(threads split across the cores).", flag="--concurrency", metavar="N", minimum=1,
                               maximum=MAX_CONCURRENCY)
    backend: str = setting("auto", BACKEND_HELP, flag="--backend", choices=BACKENDS)
    timeout_s: float = setting(30.0, "Seconds an endpoint has for each answer, the whole body included (per "
                               "attempt); a server that never answers fails after (retries + 1) x this.",
                               flag="--timeout", metavar="SECONDS", gt=0, maximum=3600)
    max_retries: int = setting(2, "Retries of a failed endpoint request (429, 5xx, timeouts, lost connections); "
                               "0: fail at the first.", flag="--retries", metavar="N", minimum=0, maximum=20)


@dataclass
class PromptingSettings(EndpointClientSettings):
    model_name_or_path: str | None = setting(None, "Model that answers (a folder, hub id, builtin:tiny, or openai:NAME "
                                             "at an endpoint); the plan's base_model unless set; none: write the "
                                             "prompts only.")
    trust_remote_code: bool = setting(False, "Allow the model's own code to run.")
    system_prompt: str | None = setting(None, "Your own instructions; rung writes them from the plan otherwise.")
    num_examples: int = setting(4, "Few-shot examples taken from data.examples (in file order).",
                               minimum=0)
    max_new_tokens: int = setting(128, "Most tokens generated per answer.", minimum=1, maximum=MAX_NEW_TOKENS)
    max_eval_examples: int = setting(50, "Rows of data.eval scored (generation is the slow part).",
                                    minimum=1)
    batch_size: int = setting(8, "Prompts generated at once.", minimum=1)
    target: float = setting(0.9, "Adherence you need; below it, climbing to fine-tuning is justified.",
                            minimum=0, maximum=1)
    zero_shot_baseline: bool = setting(True, "Also score the system prompt alone, to show what the examples add.")
    metric: str | None = setting(None, "Your own metric, FILE.py:NAME (a function (prediction, reference, row) -> "
                                 "0..1; the file relative to the plan's folder): the headline adherence figure and "
                                 "the evidence's metric. A built-in name sets the evidence's metric only.")


@dataclass
class ScoringSettings:
    """What probe and gate score with, and how many rows: one metric for every rung and model compared."""

    metric: str | None = setting(None, "Task metric: a name from engines/metrics.py (exact_match, normalized_match, "
                                 "json_valid, json_schema with --schema, json_match, token_f1, chrf, rouge_l, regex "
                                 "with --pattern, judge: an LLM grades), or FILE.py:NAME, a function of yours "
                                 "(prediction, reference, row) -> a score in [0, 1] (in a plan, the file is relative "
                                 "to the plan's folder); default: chosen from the goal and the rows.", flag="--metric", metavar="NAME|FILE.py:NAME")
    pattern: str | None = setting(None, "For metric regex: the regular expression an answer must contain "
                                  "(re.search on the trimmed answer; anchor it with ^ and $ for the whole).",
                                  flag="--pattern", metavar="REGEX")
    schema: str | dict | None = setting(None, "For metric json_schema: a JSON Schema file (in plan.yaml, a path or "
                                        "the schema itself as a mapping).", flag="--schema", metavar="FILE")
    judge_model: str | None = setting(None, "With metric judge: the model that grades each answer PASS or FAIL "
                                      "against the reference (local, or openai:NAME at api_base).",
                                      flag="--judge-model", metavar="SPEC")
    rubric: str | None = setting(None, "With metric judge: what PASS means, in words a person could apply.",
                                 flag="--rubric", metavar="TEXT")
    target: float = setting(0.9, "The score that counts as good enough, reported beside the scores (the gate's "
                            "verdict is the paired test).", flag="--target", gt=0, maximum=1)
    max_rows: int = setting(50, "Held-out rows scored (generation is the slow part).", flag="--max-rows", minimum=1)
    max_new_tokens: int = setting(128, "Most tokens generated per answer.", flag="--max-new-tokens", minimum=1,
                                  maximum=MAX_NEW_TOKENS)
    num_examples: int = setting(4, "Few-shot examples (in file order) in the prompt of the few-shot rung and of the "
                                "gate's baseline.", flag="--num-examples", minimum=1)
    trust_remote_code: bool = setting(False, "Allow the models' own code to run (off by default).",
                                      flag="--trust-remote-code")


@dataclass
class GateSettings(ScoringSettings, EndpointClientSettings):
    baseline: str | None = setting(None, "The cheaper rung the trained model must beat: a model spec; default (in a "
                                   "plan): the plan's base_model, asked with its best prompt (few-shot from "
                                   "data.examples or data.train).", flag="--baseline", metavar="SPEC")
    candidate: str | None = setting(None, "The model that must beat it, usually a rung training output; default (in "
                                    "a plan): the output of the step named by from_step.", flag="--candidate", metavar="SPEC")
    ppl_warn_ratio: float = setting(1.2, "A forgetting warning (DON'T SHIP) when the candidate's general-text "
                                    "perplexity passes this multiple of the baseline's.", flag="--ppl-warn-ratio",
                                    gt=1)


@dataclass
class ProbeSettings(ScoringSettings, EndpointClientSettings):
    """`rung probe`: the cheap rungs measured on one model (not a plan engine: its evidence feeds `rung advise`)."""

    model: str | None = setting(None, "The model measured: a local folder, a hub id, builtin:tiny, a .gguf file, "
                                "ollama:NAME[:TAG], smollm2-135m-instruct, or openai:NAME behind an OpenAI-compatible "
                                "endpoint (OpenAI, vLLM, Ollama, llama.cpp, TGI, `transformers serve`).",
                                flag="--model", metavar="SPEC")
    index: str | None = setting(None, "With --docs: where the RAG index lives, a folder or "
                                "postgresql://USER@HOST:PORT/DB?table=NAME (password from PGPASSWORD or ~/.pgpass); "
                                "default: OUT/index.", flag="--index", metavar="FOLDER|URL")
    rag_k: int = setting(4, "With --docs: chunks put in each RAG prompt.", flag="--rag-k", minimum=1, maximum=50)
    lora_steps: int = setting(40, "Optimizer steps of the short LoRA run (local models with --examples); 0 skips it.",
                              flag="--lora-steps", minimum=0)


@dataclass
class ExportSettings:
    format: str = setting("safetensors", "safetensors: the merged model in the Hugging Face layout (transformers, "
                          "vLLM). gguf: one file for llama.cpp and Ollama (Llama, Mistral, Qwen2 architectures).",
                          flag="--format", choices=("safetensors", "gguf"))
    quant: str | None = setting(None, "GGUF tensor type (default f16). f16/bf16 must reload with identical greedy "
                                "tokens; q8_0/q4_0 must meet the top-1 agreement and KL thresholds in "
                                "docs/export-and-serve.md.", flag="--quant", choices=("f16", "bf16", "q8_0", "q4_0"))
    ollama: bool = setting(False, "Also write an Ollama Modelfile: the chat template translated into a Go template, "
                           "and the stop tokens (GGUF only).", flag="--ollama")
    trust_remote_code: bool = setting(False, "Allow the model's own code to run.", flag="--trust-remote-code")


@dataclass
class ClusterSettings:
    """Where a training step's processes run: `rung run` and `rung train sft|dpo|grpo|cpt` take the same flags.
    One process unless gpus > 1 or nodes > 1 (then trainers/launch.py starts them through `accelerate launch`)."""

    gpus: int = setting(1, "Processes per machine, one per GPU; more than 1 launches multi-GPU training through "
                        "accelerate (fails before any work when torch sees fewer CUDA GPUs, unless --cpu).",
                        flag="--gpus", minimum=1)
    nodes: int = setting(1, "Machines in a multi-node run: start the same command on each, with its own --node-rank.",
                         flag="--nodes", minimum=1)
    node_rank: int = setting(0, "This machine's rank, 0 on the main node.", flag="--node-rank", minimum=0)
    main_address: str | None = setting(None, "Address of the rank-0 machine (needed with --nodes > 1).",
                                       flag="--main-address", metavar="HOST")
    main_port: int = setting(29500, "Rendezvous port on the rank-0 machine (0: pick a free one, one machine only).",
                             flag="--main-port", minimum=0, maximum=65535)
    cpu: bool = setting(False, "Run the processes on CPU (gloo): tests the distributed path without GPUs; slow.",
                        flag="--cpu")


@dataclass
class ServeSettings:
    """`rung serve`: which server, where it listens, how long rung waits for its first answer."""

    engine: str = setting("auto", "The server: transformers (CPU, development), vllm (GPU), llama.cpp (GGUF). auto: "
                          "llama.cpp for a GGUF, else transformers.", flag="--engine", metavar="auto|transformers|vllm|llama.cpp")
    host: str = setting("127.0.0.1", "Address to listen on (0.0.0.0: every interface; the server has no API key).",
                        flag="--host", metavar="HOST")
    port: int = setting(8000, "Port to listen on; 0 picks a free one.", flag="--port", minimum=0, maximum=65535)
    # vLLM compiles and captures CUDA graphs before it answers: minutes on a large model
    wait_s: float = setting(600.0, "Seconds to wait for the server's first answer.", flag="--wait", metavar="SECONDS", minimum=1,
                            maximum=86400)


# engine name -> its settings dataclass (engines/registry.py checks it covers every engine).
SETTINGS_BY_ENGINE: dict[str, type] = {
    "sft": SFTSettings, "dpo": DPOSettings, "grpo": GRPOSettings, "cpt": CPTSettings, "prompting": PromptingSettings,
    "bigger_model": BiggerModelSettings, "manual": ManualSettings, "rag_index": RagIndexSettings,
    "rag_eval": RagEvalSettings, "gate": GateSettings, "export": ExportSettings,
}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def defaults(cls: type) -> dict[str, Any]:
    return dataclasses.asdict(cls())


def to_dict(settings: Any) -> dict[str, Any]:
    return dataclasses.asdict(settings)
