# dawn-lightning: every target that needs Python depends on `setup`, which is a no-op once done.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# The default store; a stage target makes it first unless ARGS names another one (data.store_dir=...).
SYNTHETIC := data/synthetic64/index.json
DEFAULT_DATA = $(if $(findstring store_dir,$(ARGS)),,$(SYNTHETIC))
# Stage 3 needs a stage-1 checkpoint: `make train-stage1`'s newest, trained first if missing, unless ARGS names
# one (model.motion_ckpt=...).
STAGE1_CKPT := experiments/stage1/latest/checkpoints/last.ckpt
DEFAULT_STAGE1 = $(if $(findstring motion_ckpt,$(ARGS)),,$(STAGE1_CKPT))

.DEFAULT_GOAL := help
.PHONY: app bench-gpu browser help setup test lint data-synthetic validate-store train-stage1 train-stage2 train-stage3 precompute-motion train-syncnet evaluate preprocess generate demo bench sweep report tensorboard clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv, install the package (pinned in pyproject.toml) and ffmpeg when missing

$(STAMP): pyproject.toml
	@command -v ffmpeg >/dev/null || { echo "installing ffmpeg (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev,face,hubert,sweep,eval,app]"
	@touch $(STAMP)

test: setup browser ## run the test suite (CPU, under 15 minutes on 2 cores)
	$(BIN)/pytest -q tests

browser: ## Debian's chromium, for the app's browser test (installed when missing; nothing else needs it)
	@command -v chromium >/dev/null || { echo "installing chromium (Debian package, for the app's browser test)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium could not be installed: the app's browser test will skip"; }

lint: setup ## ruff lint and format check
	$(BIN)/ruff check dawn_lightning tests
	$(BIN)/ruff format --check dawn_lightning tests

data-synthetic: setup ## generate the synthetic talking-head clip store (data/synthetic64 by default)
	$(BIN)/dawn-synthetic $(ARGS)

preprocess: setup ## real videos -> clip store: make preprocess ARGS="input=/data/videos output=data/real128 size=128 [preprocess=hdtf]"
	$(BIN)/dawn-preprocess $(ARGS)

validate-store: setup ## validate a clip store: make validate-store STORE=data/synthetic64
	$(BIN)/dawn-store validate $(STORE)

$(SYNTHETIC): | setup
	$(BIN)/dawn-synthetic

train-stage1: setup $(DEFAULT_DATA) ## train the motion autoencoder (stage 1): make train-stage1 ARGS="model=motion_128 trainer=gpu"
	$(BIN)/dawn-train experiment=stage1 $(ARGS)

train-stage2: setup $(DEFAULT_DATA) ## train the pose/blink generator (stage 2): make train-stage2 ARGS="model=pose_diffusion"
	$(BIN)/dawn-train experiment=stage2 $(ARGS)

generate: setup ## portrait + speech -> mp4: make generate ARGS="portrait=face.png speech=speech.wav out=talk.mp4"
	$(BIN)/dawn-generate $(ARGS)

train-stage3: setup $(DEFAULT_DATA) $(DEFAULT_STAGE1) ## train stage 3, curriculum A then B from A: make train-stage3 [ARGS="model.motion_ckpt=..."]
	$(BIN)/dawn-train experiment=stage3a $(ARGS)
	$(BIN)/dawn-train experiment=stage3b $(ARGS)

precompute-motion: setup $(DEFAULT_DATA) $(DEFAULT_STAGE1) ## stage 3's curriculum-A targets by stage 1, once: make precompute-motion [ARGS="data.store_dir=... motion_ckpt=..."]
	$(BIN)/dawn-precompute-motion $(ARGS)

$(STAGE1_CKPT): | setup $(SYNTHETIC)
	$(BIN)/dawn-train experiment=stage1

train-syncnet: setup $(DEFAULT_DATA) ## train the project's SyncNet (for LSE-C/LSE-D on the synthetic data): make train-syncnet [ARGS=...]
	$(BIN)/dawn-train experiment=syncnet $(ARGS)

evaluate: setup ## generate + score a store split: make evaluate ARGS="run=experiments data.store_dir=data/synthetic64 split=test"
	$(BIN)/dawn-evaluate $(ARGS)

app: setup ## the web app on http://127.0.0.1:7860: make app [ARGS="--bundle <folder or hub id> --host 0.0.0.0"]
	$(BIN)/dawn-app $(ARGS)

demo: setup ## the whole method on a CPU: synthetic data, stages 1-3, a video in experiments/demo/ (reuses what is done)
	$(BIN)/dawn-demo $(ARGS)

bench-gpu: setup ## each stage trained at the paper's sizes in bf16, 128-px generation of 10 s and 60 s, on one GPU: experiments/bench/gpu.json [ARGS="--device cpu --profile tiny"]
	$(BIN)/dawn-bench gpu $(ARGS)

bench: setup $(SYNTHETIC) ## measure speed and quality: make bench [CKPT=<stage-1 ckpt>] [CKPT2=<stage-2 ckpt>]
	$(BIN)/dawn-bench stage1 $(if $(CKPT),--checkpoint $(CKPT))
	$(BIN)/dawn-bench stage3 --out experiments/bench/stage3.json
	$(BIN)/dawn-bench generate --out experiments/bench/generation.json
	$(BIN)/dawn-bench train --out experiments/bench/train.json
	$(if $(CKPT2),$(BIN)/dawn-bench stage2 --checkpoint $(CKPT2))
	$(if $(DAWN_FACE_MODEL),$(BIN)/dawn-bench preprocess --out experiments/bench/preprocess.json)
	$(BIN)/dawn-bench data --out experiments/bench/data.json
	$(BIN)/dawn-bench sampling --out experiments/bench/sampling.json  # the stage-3 runs under experiments/

SWEEP ?= window
STAGE2_SWEEPS := pose_generator optuna
# sampling sweeps re-sample the trained checkpoints (dawn-evaluate); the others train a run per setting
SAMPLING_SWEEPS := sampler guidance
sweep: setup $(DEFAULT_DATA) $(if $(filter $(SWEEP),$(STAGE2_SWEEPS) $(SAMPLING_SWEEPS)),,$(DEFAULT_STAGE1)) ## an ablation of conf/sweep/: make sweep SWEEP=window|curriculum|lip_weight|sampler|guidance|pose_generator|optuna [ARGS=...]
	$(if $(filter $(SWEEP),$(SAMPLING_SWEEPS)),$(BIN)/dawn-evaluate,$(BIN)/dawn-train) --multirun +sweep=$(SWEEP) $(ARGS)

report: setup ## table (markdown, CSV) and plot of a sweep's runs: make report [SWEEP_DIR=experiments/sweeps/window/<time>]
	$(BIN)/dawn-report $(SWEEP_DIR)

tensorboard: setup ## serve TensorBoard over experiments/
	$(BIN)/tensorboard --logdir experiments

clean: ## remove caches and the venv (keeps data/ and experiments/)
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
