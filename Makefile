# The two commands a newcomer needs (see README):
#   make run    install everything, fetch the model and sample data, run the DVC pipeline
#   make test   install everything, run the tests
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: run test data
run: $(VENV)/.installed
	dvc pull --quiet data.dvc
	dvc repro

test: $(VENV)/.installed
	python -m pytest

# regenerate the versioned sample data after changing the generator or `synth` params
data: $(VENV)/.installed
	rm -rf data
	kirinuki synth data
	dvc add data
	dvc push data.dvc

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@
