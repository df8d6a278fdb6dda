# avsync: `make help` lists the targets. Every target bootstraps .venv on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
EXP     ?= twotower_synth
GPUS    ?= 0
DATA    ?= data/synth
CACHE   ?= cache
CKPT    ?=
SWEEP   ?= experiments/sweeps/twotower_lr.yaml
REAL    ?= experiments/real_clips.jsonl
FOLDS   ?= 0 1 2 3 4
FOLD_DATA ?= experiments/real_folds
WITH    ?=
WITH_EXP ?=
WITH_WEIGHT ?= 2.0
# landmark backend (mesh, dlib, fan) of training and eval; runs and results of another than mesh (the default) are named EXP_BACKEND
BACKEND ?= mesh
BACKEND_SUFFIX = $(if $(filter-out mesh,$(BACKEND)),_$(BACKEND),)
# layers on EXP: names of experiments/with/*.yaml (e.g. ALSO=batch_negatives); their runs and results are named EXP_ALSO
ALSO    ?=
CONFIGS  = --config experiments/base.yaml --config experiments/$(EXP).yaml $(foreach c,$(ALSO),--config experiments/with/$(c).yaml)
RUN_EXP  = $(EXP)$(BACKEND_SUFFIX)$(foreach c,$(ALSO),_$(c))
PYTEST_ARGS ?=
# train/eval generate the synthetic dataset first, unless DATA names another dataset
DEFAULT_DATA := $(if $(filter command line,$(origin DATA)),,synth)

.PHONY: help install test test-fast train export synth eval eval-takes eval-takes-real eval-real folds eval-folds reaudit eval-locked bench sweep clean

help: ## list the targets and their variables
	@echo "usage: make TARGET [VAR=value ...]"
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'
	@echo "variables: EXP=$(EXP) ALSO=$(ALSO) BACKEND=$(BACKEND) GPUS=$(GPUS) DATA=$(DATA) CACHE=$(CACHE) CKPT=$(CKPT) SWEEP=$(SWEEP) REAL=$(REAL) VENV=$(VENV)"

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip" "setuptools<81" wheel
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install avsync (idempotent)

test: $(STAMP) ## run the whole test suite (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## run the tests not marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

synth: $(STAMP) ## generate the built-in synthetic dataset into DATA (skipped if present)
	@test -f $(DATA)/manifest.jsonl || $(VENV)/bin/avsync synth $(DATA)

train: $(STAMP) $(DEFAULT_DATA) ## train experiment EXP (experiments/EXP.yaml) on GPUS GPUs (0 = CPU)
	$(VENV)/bin/avsync fit $(CONFIGS) \
	    $(if $(filter command line,$(origin DATA)),--data.data=$(DATA),) \
	    $(if $(filter command line,$(origin CACHE)),--data.cache=$(CACHE),) \
	    $(if $(filter-out mesh,$(BACKEND)),--data.visual.backend=$(BACKEND),) \
	    $(if $(filter-out $(EXP),$(RUN_EXP)),--trainer.logger.init_args.name=$(RUN_EXP),) \
	    $(if $(filter-out 0,$(GPUS)),--trainer.accelerator=gpu --trainer.devices=$(GPUS) --trainer.strategy=ddp,)

SHIPPED_CKPTS := $(wildcard avsync/models/pretrained/*.ckpt)
export: $(STAMP) ## export CKPT (default: the shipped models) to ONNX beside it (X.ckpt -> X.onnx): avsync align/check then run it without torch; part of shipping a model
	$(PY) -m avsync.models.export $(or $(CKPT),$(SHIPPED_CKPTS))

eval: $(STAMP) $(DEFAULT_DATA) ## DTW alignment cost and frame error of CKPT (default: newest from make train, else the shipped model)
	$(VENV)/bin/avsync eval --checkpoint $(or $(CKPT),$(if $(wildcard runs/*/*/checkpoints/*.ckpt),latest,shipped)) \
	    --data $(DATA) --cache $(CACHE) --backend $(BACKEND)

TAKES   ?= data/takes
UNSEEN_BY ?= $(if $(WITH)$(WITH_EXP),experiments/realav_split.jsonl,)
eval-takes: $(STAMP) ## takes placed inside long songs (the editor's case): synthetic songs in TAKES (written if missing), CKPT (default shipped)
	@test -f $(TAKES)/manifest.jsonl || $(PY) -c "from avsync.evaluation.takes import write_take_songs as w; w('$(TAKES)')"
	$(VENV)/bin/avsync eval --protocol takes --data $(TAKES)/manifest.jsonl --split all --cache $(CACHE) --constant \
	    --seed 2 --seeds 2 --out results/eval_takes.json --checkpoint $(or $(CKPT),shipped) --backend $(BACKEND)  # seeds 0-1 tuned the placement

eval-takes-real: $(STAMP) ## the takes of each fold's unseen speakers placed in a reference of every real clip's audio in a row, by the fold runs of make eval-folds EXP=... (WITH/WITH_EXP: their ensembles); pooled, and the clips UNSEEN_BY's train split never saw
	@set -e; out=results/takes_folds/$(RUN_EXP)$(if $(WITH)$(WITH_EXP),_ensemble,); for k in $(FOLDS); do \
	    ckpt=$$(ls -t runs/$(RUN_EXP)_fold$$k/*/checkpoints/last.ckpt$(if $(WITH)$(WITH_EXP),.ensemble,) 2>/dev/null | head -n 1); \
	    test -n "$$ckpt" || { echo "error: no fold $$k run of $(RUN_EXP): run make eval-folds EXP=$(EXP) BACKEND=$(BACKEND) first" >&2; exit 2; }; \
	    $(VENV)/bin/avsync eval --protocol takes --data $(FOLD_DATA)/fold$$k.jsonl --split test --cache $(CACHE) --seeds 1 \
	        --checkpoint $$ckpt --backend $(BACKEND) --constant --quiet --out $$out/fold$$k.json; \
	done; \
	$(VENV)/bin/avsync eval --protocol takes --pool $$out/fold*.json --out $$out/pooled.json $(if $(UNSEEN_BY),--unseen-by $(UNSEEN_BY),)

eval-real: $(STAMP) ## warped real clips of REAL's test split (../shared/data) aligned by CKPT, baseline, perfect offset (unseen-speaker figures: eval-folds)
	$(VENV)/bin/avsync eval --protocol real --data $(REAL) --cache $(CACHE) --constant --out results/eval_real.json \
	    --checkpoint $(or $(CKPT),shipped) --backend $(BACKEND)

folds: $(STAMP) ## write the 5 leave-speakers-out fold manifests of REAL into experiments/real_folds/
	$(PY) -c "import json; from avsync.evaluation.folds import write_fold_manifests as w; print(*w('$(REAL)', '$(CACHE)', 'experiments/real_folds', folds=json.load(open('experiments/real_folds/folds.json'))), sep='\n')"

TRAIN   ?= 1
FOLDS_SUMMARY = experiments/results/folds_$(RUN_EXP)$(if $(WITH)$(WITH_EXP),_ensemble,).json
eval-folds: $(STAMP) ## cross-validate EXP on the real clips: per fold (FOLD_DATA) train (TRAIN=0: reuse the newest fold runs), align its unseen speakers, pool (WITH=CKPT or WITH_EXP=EXP2's fold runs: as an ensemble, weight WITH_WEIGHT; then also the clips UNSEEN_BY's train split never saw); the summary to commit: FOLDS_SUMMARY
	@set -e; for k in $(FOLDS); do \
	    if [ "$(TRAIN)" != 0 ]; then $(VENV)/bin/avsync fit $(CONFIGS) \
	        --data.data=$(FOLD_DATA)/fold$$k.jsonl --data.cache=$(CACHE) --data.visual.backend=$(BACKEND) \
	        --trainer.logger.init_args.name=$(RUN_EXP)_fold$$k; fi; \
	    ckpt=$$(ls -t runs/$(RUN_EXP)_fold$$k/*/checkpoints/last.ckpt 2>/dev/null | head -n 1); \
	    test -n "$$ckpt" || { echo "error: no runs/$(RUN_EXP)_fold$$k/*/checkpoints/last.ckpt: run make eval-folds EXP=$(EXP) BACKEND=$(BACKEND) without TRAIN=0 first" >&2; exit 2; }; \
	    with='$(WITH)'; \
	    if [ -n "$(WITH_EXP)" ]; then \
	        with=$$(ls -t runs/$(WITH_EXP)$(BACKEND_SUFFIX)_fold$$k/*/checkpoints/last.ckpt 2>/dev/null | head -n 1); \
	        test -n "$$with" || { echo "error: no runs/$(WITH_EXP)$(BACKEND_SUFFIX)_fold$$k/*/checkpoints/last.ckpt: run make eval-folds EXP=$(WITH_EXP) BACKEND=$(BACKEND) first" >&2; exit 2; }; \
	    fi; \
	    if [ -n "$$with" ]; then \
	        $(PY) -c "from avsync.models.ensemble import combine_checkpoints as c; c(['$$ckpt', '$$with'], [1.0, $(WITH_WEIGHT)], '$$ckpt.ensemble')"; \
	        ckpt=$$ckpt.ensemble; \
	    fi; \
	    $(VENV)/bin/avsync eval --protocol real --data $(FOLD_DATA)/fold$$k.jsonl --split test --cache $(CACHE) \
	        --checkpoint $$ckpt --backend $(BACKEND) --constant --quiet --out results/folds/$(RUN_EXP)$(if $(WITH)$(WITH_EXP),_ensemble,)/fold$$k.json; \
	done
	$(VENV)/bin/avsync eval --pool results/folds/$(RUN_EXP)$(if $(WITH)$(WITH_EXP),_ensemble,)/fold*.json --out results/folds/$(RUN_EXP)$(if $(WITH)$(WITH_EXP),_ensemble,)/pooled.json \
	    $(if $(UNSEEN_BY),--unseen-by $(UNSEEN_BY),) --truths $(REAL) --summary $(FOLDS_SUMMARY)

reaudit: check-real ## each real clip's truth by witnesses that do not share a fault: dataset sync, else the model-free reference and the out-of-fold LipSync of make eval-folds EXP=lipsync_real agreeing, else unverified (experiments/results/reaudit.json; APPLY=1 writes truth_by and moved offsets into experiments/*.jsonl)
	$(PY) -m avsync.evaluation.reaudit --manifest $(REAL) --check results/check_real.json --runs 'runs/lipsync_real$(BACKEND_SUFFIX)_fold{k}' \
	    --backend $(BACKEND) --cache $(CACHE) --out experiments/results/reaudit.json $(if $(APPLY),--apply,)

LOCKED  ?= experiments/locked_test.jsonl
TRAINED_ON ?=
eval-locked: $(STAMP) ## the locked test set LOCKED (whole speakers no choice sees; docs/real_faces.md), once per shipped model: CKPT with TRAINED_ON="its train/val manifests" (checked: no locked speaker), else the shipped recipe with LipSync retrained on experiments/real_open_train.jsonl beside the shipped TwoTower
	@set -e; ckpt='$(CKPT)'; \
	if [ -z "$$ckpt" ]; then \
	    $(PY) -m avsync.evaluation.locked check experiments/real_open_train.jsonl experiments/realav_split.jsonl --locked $(LOCKED); \
	    $(VENV)/bin/avsync fit --config experiments/base.yaml --config experiments/lipsync_real.yaml \
	        --data.data=experiments/real_open_train.jsonl --data.cache=$(CACHE) --trainer.logger.init_args.name=lipsync_real_open; \
	    run=$$(ls -t runs/lipsync_real_open/*/checkpoints/last.ckpt | head -n 1); \
	    $(PY) -c "from avsync.models.ensemble import combine_checkpoints as c; c(['$$run', 'avsync/models/pretrained/twotower_realsynth.ckpt'], [1.0, 2.0], '$$run.ensemble')"; \
	    ckpt=$$run.ensemble; \
	else \
	    test -n "$(TRAINED_ON)" || { echo "error: CKPT needs TRAINED_ON=\"MANIFEST ...\": what it was trained and selected on, checked against the locked speakers" >&2; exit 2; }; \
	    $(PY) -m avsync.evaluation.locked check $(TRAINED_ON) --locked $(LOCKED); \
	fi; \
	$(VENV)/bin/avsync eval --protocol real --data $(LOCKED) --split test --cache $(CACHE) --checkpoint $$ckpt --constant --quiet \
	    --out results/locked/eval.json; \
	$(VENV)/bin/avsync eval --pool results/locked/eval.json --out results/locked/pooled.json --truths $(LOCKED) --summary experiments/results/locked.json

bench: $(STAMP) ## run the speed and memory benchmarks (benchmarks/bench_*.py)
	$(PY) -m benchmarks

sweep: $(STAMP) ## run the W&B sweep SWEEP (local grid/random search when no W&B server)
	$(VENV)/bin/avsync sweep $(SWEEP)

clean: ## remove the feature cache, runs, eval results and logs (keeps .venv and data/)
	rm -rf $(CACHE) runs results lightning_logs wandb .pytest_cache

check-real: $(STAMP) ## the model-free sync reference (avsync/truth) on REAL's clips: per dataset decided, bias, within +-0.5/+-1 frame, gross errors; windows of long clips; MODEL=1: the model beside it (docs/sync_truth.md)
	$(PY) -m avsync.evaluation.sync_truth --manifest $(REAL) --cache $(CACHE) --out results/check_real.json --windows 3 5 10 20 $(if $(MODEL),--model,)
