# memdyn: `make demo` and `make test` are the two commands. Each builds .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo test test-all lint format bench docs notebooks clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## fast reproduction of each paper's headline result into results/
	$(BIN)/python -m memdyn.demo

test: $(STAMP)  ## lint, then the default (fast) test suite, on 2 workers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=25

test-all: $(STAMP)  ## the full suite, slow reproductions included
	$(BIN)/python -m pytest -m ""

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff formatting and fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## benchmarks against PyTorch / SciPy (needs the bench extra)
	@# torch only when missing: a CPU machine should install the CPU wheel first (see README).
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -e ".[bench]"
	$(BIN)/python -m benchmarks

NOTEBOOKS := $(wildcard notebooks/*.py)
NOTEBOOK_OUT := results/notebooks

notebooks: $(STAMP)  ## execute every notebook to results/notebooks/*.ipynb (installs the notebooks extra)
	$(BIN)/python -c "import jupytext, nbclient, nbconvert, ipykernel, jupyterlab" 2>/dev/null \
		|| $(BIN)/pip install -e ".[notebooks]"
	mkdir -p $(NOTEBOOK_OUT)
	@# Small mode by default; MEMDYN_NOTEBOOK_FULL=1 make notebooks runs the paper-sized cells.
	for notebook in $(NOTEBOOKS); do \
		$(BIN)/jupytext --to ipynb \
			--execute --run-path . --output $(NOTEBOOK_OUT)/$$(basename $$notebook .py).ipynb \
			$$notebook || exit 1; \
	done
	@echo "open them with: $(BIN)/jupyter lab $(NOTEBOOK_OUT)"

docs: $(STAMP)  ## build the documentation site into site/ (warnings are errors)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

.PHONY: mutation
mutation: $(STAMP)  ## mutation score of the numerical core on a snapshot of HEAD (slow; not in CI)
	rm -rf /tmp/memdyn-mutation && mkdir -p /tmp/memdyn-mutation
	git archive HEAD | tar -x -C /tmp/memdyn-mutation
	JAX_PLATFORMS=cpu OMP_NUM_THREADS=1 $(BIN)/python tools/mutation.py \
		--root /tmp/memdyn-mutation --out results/mutation/mutation.json $(MUTATION_ARGS)

clean:  ## remove results, site/ and caches (keeps .venv)
	rm -rf results site .pytest_cache .ruff_cache
