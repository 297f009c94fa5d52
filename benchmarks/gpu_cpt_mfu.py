"""GPU: tokens/s and MFU of continued pretraining on one GPU, for a ~1B-parameter Llama built from its config.

Install-free: needs only torch and transformers (no download, no datasets/accelerate/peft). The model is the
Llama-3.2-1B shape with a 32k vocabulary (hidden 2048, 16 layers, 32 heads / 8 KV heads, MLP 8192,
tied embeddings: 1.04B parameters), trained on random tokens at sequence length 2048 — MFU does not depend on
what the tokens say. The step is the one rung's CPT engine runs on a GPU (trainers/cpt/ through the
transformers Trainer): fp32 master weights, bf16 autocast, SDPA attention (flash kernel on Hopper),
fused AdamW, gradient clipping at 1.0, causal-LM loss over every position. Options add torch.compile and
gradient checkpointing (rung's GPU default, ~+33% compute that MFU does not count).

    python benchmarks/gpu_cpt_mfu.py                 # ~2-3 min on an H100/H200
    python benchmarks/gpu_cpt_mfu.py --compile --batch 8 --steps 300 --json out.json
    python benchmarks/gpu_cpt_mfu.py --engine trainer   # the same step through transformers.Trainer

MFU = tokens/s × model FLOPs per token ÷ peak dense BF16 FLOP/s. FLOPs per token: advisor.estimator's 6N
(N with the tied LM head, which is a real matmul) when rung is importable, else the same formula inline; the
PaLM convention that adds attention's 12·L·H·S is printed beside it. Peak: advisor/gpus.yaml via
torch.cuda.get_device_name() (H100 SXM / H200: 989.5 TFLOPS), or --peak-tflops.
Goal >= 45% (torchtitan reports 33-39% and llm-foundry 46% on H100 for 7-8B).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHAPE = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
             num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=True, rope_theta=500000.0,
             rms_norm_eps=1e-5)


def flops_per_token(n_params: int, layers: int, hidden: int, seq: int) -> tuple[float, float, str]:
    """(6N model FLOPs per token, 6N + 12·L·H·S, source)."""
    try:
        from rung.advisor.estimator import ModelShape
        from rung.advisor.estimator import flops_per_token as estimator_flops

        six_n = estimator_flops(ModelShape(n_params / 1e9, layers, hidden, SHAPE["vocab_size"], "config"), "cpt", "full")
        source = "rung.advisor.estimator.flops_per_token"
    except ImportError:
        six_n, source = 6.0 * n_params, "6N (rung not importable)"
    return six_n, six_n + 12.0 * layers * hidden * seq, source


def peak_tflops(name: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    try:
        from rung.trainers.throughput import gpu_peak_tflops

        return gpu_peak_tflops(name)
    except ImportError:
        table = {"H200": 989.5, "H100": 989.5, "H800": 989.5, "A100": 312.0, "B200": 2250.0}
        for key, value in table.items():
            if key in name.upper():
                return value, key
        return None, f"unknown GPU {name}: pass --peak-tflops"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="Timed optimizer steps (after --warmup).")
    parser.add_argument("--warmup", type=int, default=15, help="Untimed steps first (allocator, compile).")
    parser.add_argument("--batch", type=int, default=8, help="Sequences per step (8 × 2048 = 16k tokens).")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model.")
    parser.add_argument("--grad-ckpt", action="store_true", help="Gradient checkpointing (rung's GPU default).")
    parser.add_argument("--attn", default="sdpa", help="sdpa | flash_attention_2 | eager")
    parser.add_argument("--engine", choices=["plain", "trainer"], default="plain",
                        help="plain: the step in a torch loop; trainer: through transformers.Trainer (needs accelerate).")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--max-seconds", type=float, default=270, help="Stop timing early past this wall time.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if not torch.cuda.is_available():
        sys.exit("gpu_cpt_mfu.py needs a CUDA GPU")
    started = time.time()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    device = torch.device("cuda")
    config = LlamaConfig(max_position_embeddings=args.seq, attn_implementation=args.attn, **SHAPE)
    with torch.device(device):
        model = LlamaForCausalLM(config)  # fp32 master weights, as the Trainer keeps them under bf16 autocast
    n_params = sum(p.numel() for p in model.parameters())
    if args.grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    six_n, with_attention, flops_source = flops_per_token(n_params, SHAPE["num_hidden_layers"], SHAPE["hidden_size"],
                                                          args.seq)
    name = torch.cuda.get_device_name(0)
    peak, peak_source = peak_tflops(name, args.peak_tflops)
    tokens_per_step = args.batch * args.seq
    print(f"{name}: Llama {n_params / 1e9:.2f}B, seq {args.seq}, batch {args.batch} ({tokens_per_step:,} tokens/step), "
          f"attn {args.attn}, compile {args.compile}, grad ckpt {args.grad_ckpt}, engine {args.engine}", flush=True)
    batches = [torch.randint(0, SHAPE["vocab_size"], (args.batch, args.seq), device=device) for _ in range(4)]

    if args.engine == "trainer":
        step_times = run_trainer(model, batches, args)
    else:
        step_times = run_plain(model, batches, args, started)

    mean = sum(step_times) / len(step_times)
    tokens_per_s = tokens_per_step / mean
    result = {
        "gpu": name, "params": n_params, "seq": args.seq, "batch": args.batch, "compile": args.compile,
        "grad_ckpt": args.grad_ckpt, "attn": args.attn, "engine": args.engine, "timed_steps": len(step_times),
        "step_s": round(mean, 4), "tokens_per_s": round(tokens_per_s),
        "flops_per_token_6n": six_n, "flops_source": flops_source, "peak_bf16_tflops": peak, "peak_source": peak_source,
        "mfu": round(tokens_per_s * six_n / (peak * 1e12), 4) if peak else None,
        "mfu_with_attention": round(tokens_per_s * with_attention / (peak * 1e12), 4) if peak else None,
        "max_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 1),
        "wall_s": round(time.time() - started, 1),
    }
    print(json.dumps(result, indent=2))
    if peak:
        print(f"tokens/s {tokens_per_s:,.0f}; MFU {result['mfu']:.1%} (6N), {result['mfu_with_attention']:.1%} "
              f"with attention FLOPs; goal >= 45%")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def run_plain(model, batches, args, started) -> list[float]:
    import torch

    model.train()
    step_model = torch.compile(model) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, fused=True)
    times: list[float] = []
    for step in range(args.warmup + args.steps):
        ids = batches[step % len(batches)]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
        if step % 50 == 0:
            print(f"step {step}: loss {loss.item():.3f}, {time.perf_counter() - t0:.3f} s", flush=True)
        if time.time() - started > args.max_seconds and len(times) >= 20:
            print(f"stopping after {len(times)} timed steps (--max-seconds {args.max_seconds})", flush=True)
            break
    return times


def run_trainer(model, batches, args) -> list[float]:
    """The same step through transformers.Trainer with the arguments rung's CPT engine passes on a GPU."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return (args.warmup + args.steps) * args.batch

        def __getitem__(self, index):
            ids = batches[(index // args.batch) % len(batches)][index % args.batch].cpu()
            return {"input_ids": ids, "labels": ids}

    class Timer(TrainerCallback):
        marks: list[float] = []

        def on_step_end(self, a, state, control, **kwargs):
            torch.cuda.synchronize()
            self.marks.append(time.perf_counter())

    timer = Timer()
    targs = TrainingArguments(
        output_dir="/tmp/gpu_cpt_mfu", max_steps=args.warmup + args.steps, per_device_train_batch_size=args.batch,
        learning_rate=1e-4, lr_scheduler_type="cosine", warmup_steps=0.03, bf16=True, torch_compile=args.compile,
        gradient_checkpointing=args.grad_ckpt, optim="adamw_torch_fused", save_strategy="no", eval_strategy="no",
        logging_steps=50, report_to="none", dataloader_num_workers=2, disable_tqdm=True)
    Trainer(model=model, args=targs, train_dataset=Blocks(), callbacks=[timer]).train()
    marks = timer.marks[args.warmup:]
    return [b - a for a, b in zip(marks, marks[1:])]


if __name__ == "__main__":
    main()
