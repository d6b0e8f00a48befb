PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench docs clean

$(BIN)/python:
	$(shell command -v $(PY) || echo python3) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

$(VENV)/.dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.demo

$(VENV)/.docs: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[demo,zoo,docs]'
	touch $@

## make demo: explain a real pretrained network on a real clip, offline.
demo: $(VENV)/.demo
	-@sh scripts/ensure-graphviz
	$(BIN)/fxcfp explain --out fxcfp-out/demo

## make docs: the gallery of real reports (scripts/gallery.py), then the site in site/.
docs: $(VENV)/.docs
	-@sh scripts/ensure-graphviz
	-@sh scripts/ensure-chromium
	$(BIN)/python scripts/gallery.py
	$(BIN)/mkdocs build --strict

## make test: lint, type-check, then the whole suite with the docstring examples and warnings as
## errors (the browser test installs Debian's chromium when it can). Each step fails the target,
## pytest's exit 5 (no test collected) too.
test: $(VENV)/.dev
	-@sh scripts/ensure-chromium
	-@sh scripts/ensure-graphviz
	$(BIN)/ruff check fxcfp tests benchmarks
	$(BIN)/python -m mypy fxcfp
	$(BIN)/python -m pytest -q tests

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/core.py

clean:
	rm -rf $(VENV) fxcfp-out site docs/gallery .pytest_cache .ruff_cache .mypy_cache .hypothesis
