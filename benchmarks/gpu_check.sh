#!/usr/bin/env bash
# The GPU checks, run as one script on a CUDA machine without network (the lent GPU machine):
#   - the `gpu`-marked tests (QLoRA SFT on a 4-bit base, CPT with bf16 and MFU),
#   - benchmarks/gpu_cpt_mfu.py (tokens/s and MFU of a 1B Llama's CPT step): the plain loop and the same step
#     through transformers.Trainer (what rung's CPT engine runs).
# Wheels the machine lacks can travel in .whl/ (installed to /tmp/site); OUT (default ./gpu_out) gets the logs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PY:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The repository root is the package `rung`: make it importable under that name without installing.
mkdir -p /tmp/rung_pkg && ln -sfn "$PWD" /tmp/rung_pkg/rung
export PYTHONPATH=/tmp/rung_pkg:${PYTHONPATH:-}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, trl, peft, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'datasets', datasets.__version__)" | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -p no:cacheprovider -m gpu -o addopts="--strict-markers -ra" tests/trainers/test_train_gpu.py tests/cli/test_serve_gpu.py \
  tests/trainers/test_cpt_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
STEPS=${STEPS:-100}
$PY benchmarks/gpu_cpt_mfu.py --steps "$STEPS" --max-seconds 90 --json "$OUT/mfu.json" 2>&1 | tee "$OUT/mfu.log"
$PY benchmarks/gpu_cpt_mfu.py --engine trainer --steps "$STEPS" --max-seconds 90 --json "$OUT/mfu_trainer.json" \
  2>&1 | tee "$OUT/mfu_trainer.log"
