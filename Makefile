# memdyn: `make demo` and `make test` are the two commands. Each builds .venv when needed, from
# the lock of tested versions (requirements/lock.txt, hash-checked), so every machine gets the
# same stack. `make lock` re-resolves it; `make test-latest` tries the newest releases instead.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
# The CPU build where the machine offers one (CI's .ci/run installs the same release first).
TORCH_VERSION := 2.13.0
LATEST := .venv-latest

.PHONY: help demo doctor test test-all test-latest lock lint format bench docs notebooks clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install "pip==$(PIP_VERSION)" >/dev/null
	$(BIN)/pip install --require-hashes -r $(LOCK)
	$(BIN)/pip install --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

demo: $(STAMP)  ## fast reproduction of each paper's headline result into results/
	$(BIN)/python -m demo

test: $(STAMP)  ## lint, the stack's check (memdyn doctor), then the default suite on 2 workers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/memdyn doctor
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=25

doctor: $(STAMP)  ## versions, devices, XLA flags, CPU, then the canaries (is this stack right?)
	$(BIN)/memdyn doctor

test-all: $(STAMP)  ## the full suite, slow reproductions included
	$(BIN)/python -m pytest -m ""

# Not the lock: the newest releases pyproject.toml allows, in a separate environment, so that an
# upstream fix or a new breakage is seen the day it happens. The first doctor shows the raw stack
# (workaround off; informative, never fails), the second and the tests run as users do.
test-latest:  ## newest releases (no lock) in .venv-latest: doctor, canaries and mapped paths
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --upgrade pip >/dev/null
	$(LATEST)/bin/pip install --upgrade --upgrade-strategy eager -e ".[dev]"
	-MEMDYN_XLA_WORKAROUND=0 $(LATEST)/bin/memdyn doctor
	$(LATEST)/bin/memdyn doctor
	$(LATEST)/bin/python -m pytest -n 2 --dist worksteal -m "canary and not slow" -p no:cacheprovider

lock:  ## re-resolve requirements/lock.txt: newest versions pyproject.toml allows, one per package
	test -x .venv-lock/bin/uv || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install "uv==$(UV_VERSION)")
	.venv-lock/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--fork-strategy fewest --generate-hashes --custom-compile-command "make lock" -o $(LOCK)

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff formatting and fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## benchmarks against PyTorch / SciPy (needs the bench extra)
	@# torch only when missing: a CPU machine should install the CPU wheel first (see README).
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "torch==$(TORCH_VERSION)"
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
