# Graft: `make run` (sample pipeline) and `make test` (test suite). Both create .venv if missing.
SHELL := /bin/bash
# Keras 2 (tf_keras) everywhere, decided before any Python process starts: TFT/TFMA set this
# on import, which would otherwise split Keras 2 and 3 between the driver and Beam workers.
export TF_USE_LEGACY_KERAS := 1

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.graft-installed

# Python 3.10 is the only Python TFX 1.16 ships wheels for: take python3.10 from PATH, else pyenv's.
PYTHON310 ?= $(shell for p in $$(command -v python3.10) $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10.*/bin/python3.10; do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo "$$p"; break; }; done)

# Test processes in parallel: a pipeline run spends much of its time in single-threaded Python
# (TFX orchestration, Beam's in-memory runner), so two runs side by side nearly halve the suite
# on 2 cores. Each worker holds a few GB; raise it on bigger machines (make test WORKERS=4).
WORKERS ?= 2

.PHONY: setup run run-text test test-fast test-registry lint bench bench-text bench-scale bench-promotion bench-warm-start story kfp-in-containers clean-run help

help:
	@echo "make run        set up .venv if missing, run the pipeline on the bundled sample (digits)"
	@echo "make run-text   the same on the bundled text sample (review sentences)"
	@echo "make test       set up .venv if missing, lint, then the whole test suite (14-15 minutes on 2 cores, setup included)"
	@echo "make test-fast  the tests that run no pipeline and train no model, for the edit loop"
	@echo "make test-registry  every Keras architecture built against the sizes the registry records (when the Keras pin changes)"
	@echo "make lint       ruff: lint and formatting check"
	@echo "make bench      Graft vs the classic Keras script, a pretrained backbone transferred, small-data case (about 40 minutes)"
	@echo "make bench-text Graft's default text model vs TF-IDF + logistic regression, and the Tuner, on two corpora (about 15 minutes)"
	@echo "make bench-scale N=\"20000 80000\"  a local run's seconds per 1,000 images and peak memory as the data grows, and the"
	@echo "                Trainer's image decoding against the machine's limit (about 25 minutes; images kept in /tmp/graft-bench-scale)"
	@echo "make bench-promotion  10 retrains of the sample on identical data against a serving model trained the same way:"
	@echo "                how many each promotion rule would push (about 30 minutes; SAMPLE=text: the review sentences)"
	@echo "make bench-warm-start  init_from serving vs a cold start on span 2 of the digits story: accuracy, Trainer time (15 min)"
	@echo "make kfp-in-containers  build the image here (no registry) and run the sample's compiled Kubeflow spec with each task"
	@echo "                as a container of it, every path on a local S3 server; then as processes, side by side (needs docker)"
	@echo "make story      scheduled retraining on the digits as spans, with graft run and graft kfp run-local: push, refuse"
	@echo "                on the interval, skip when nothing is new, refuse a class collapse; graft history (about 30 minutes)"

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml kubeflow/install.sh
	@py="$(firstword $(PYTHON310))"; \
	if [ -z "$$py" ] || ! "$$py" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
	  echo "error: Python 3.10 not found. TFX 1.16 needs exactly 3.10: put python3.10 on PATH," >&2; \
	  echo "       install it with 'pyenv install 3.10.13', or run 'make PYTHON310=/path/to/python3.10'." >&2; \
	  exit 2; \
	fi; \
	echo "Setting up $(VENV) with $$py (about a minute: uv, 3.3 GB of packages)"; \
	[ -x $(PY) ] || "$$py" -m venv $(VENV)
	bash kubeflow/install.sh $(PY) all   # the same install the container image runs
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m pipeline.sample_data
	$(PY) local_runner.py --config pipeline/sample_config.yaml --summary-json tfx_pipeline_output/graft-digits/summary.json $(ARGS)

run-text: $(STAMP)
	$(PY) -m pipeline.sample_text_data
	$(PY) local_runner.py --config pipeline/sample_text_config.yaml --summary-json tfx_pipeline_output/graft-reviews/summary.json $(ARGS)

test: $(STAMP) lint
	$(PY) -m pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder -m "not registry" $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) -m "not e2e and not slow and not registry" $(PYTEST_ARGS)

test-registry: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) -m registry $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m tests.benchmarks.bench_trainer

bench-text: $(STAMP)
	$(PY) -m tests.benchmarks.text_baseline

N ?= 20000 80000
bench-scale: $(STAMP)
	$(PY) -m tests.benchmarks.scale --images $(N)

SAMPLE ?= digits
bench-promotion: $(STAMP)
	$(PY) -m tests.benchmarks.promotion --sample $(SAMPLE)

bench-warm-start: $(STAMP)
	$(PY) -m tests.benchmarks.warm_start

story: $(STAMP)
	$(PY) -m tests.benchmarks.retraining_story

IMAGE ?= graft:local
kfp-in-containers: $(STAMP)
	bash kubeflow/build_local_image.sh $(IMAGE)
	$(PY) -m tests.benchmarks.kfp_in_containers --image $(IMAGE)

clean-run:
	rm -rf tfx_pipeline_output tfx_metadata
