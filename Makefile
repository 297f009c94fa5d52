# Two commands: `make demo` and `make test`. Both build .venv in the repo root.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first with an exact pin: a CPU build of 2.13.0 is on disk on these machines,
# an unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: venv test test-fast demo bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# One torch thread: two cores shared with other load slow torch 4-40x otherwise.
test: venv
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	$(BIN)/python -m pytest -m "not gpu" -q

test-fast: venv
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not gpu and not slow" -q

# The whole journey offline on the CPU: plan the SQL-assistant example, pretrain builtin:tiny briefly (stage 1,
# cached), fine-tune it (stage 2), print the report path. ~5-8 minutes on 2 cores after the install.
# One torch thread: on two shared cores it is as fast and never stalls (docs/development.md, "Measured on 2 cores").
demo: venv
	OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	$(BIN)/rung demo

# The CPU benchmarks behind BENCHMARKS.md (several minutes; run on a quiet machine).
# benchmarks/gpu_cpt_mfu.py needs a CUDA GPU and is run by hand there; so is benchmarks/bench_scale.py
# (pgvector vs FAISS HNSW at 100k-200k synthetic vectors: 10-20 minutes on 2 cores).
bench: venv
	$(BIN)/python benchmarks/bench_advise.py
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_rag.py
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_hybrid.py
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_sft.py --repeats 3
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_cpt.py --steps 40 --repeats 3

# docs/cli.md and docs/rules.md from the click commands and advisor/rules.yaml (tests/cli/test_docs.py
# fails when the committed pages are stale).
docs: venv
	$(BIN)/python -m rung.cli.docs

clean:
	rm -rf $(VENV) build *.egg-info
