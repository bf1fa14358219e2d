# Two entry points do all set-up on a fresh machine:
#   make demo   builds .venv, materialises scikit-learn's digits, then the whole job (search,
#               final model, test, export) within a 2-minute budget
#   make test   builds .venv and runs the test suite (.ci/run calls exactly this)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test lint bench timm-names clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/autoclf datasets digits data/digits
	$(BIN)/autoclf run specs/digits.yaml --time 2m --export exports/digits

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check automl_clf tests bench
	$(BIN)/ruff format --check automl_clf tests bench
	$(BIN)/mypy automl_clf
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/pruning.py

# After a timm upgrade: the shipped timm model names that spec checks read without importing timm
# (automl_clf/spec/timm_names.py); tests/spec/test_backbones.py fails until they are rewritten.
timm-names: $(STAMP)
	$(BIN)/python -m automl_clf.spec.backbones

clean:
	rm -rf $(VENV) studies/*.db exports data
