# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export OMP_NUM_THREADS ?= 2

.PHONY: install demo test lint bench docs docs-build clean

install: $(STAMP)

# [ray]: the Ray sampler's tests run in `make test` (an ~80 MB wheel).
# [metaworld]: the Meta-World tests run in `make test` (metaworld 37 MB + scipy).
# examples/fastadapt-example: the plugin example (a family and an algorithm found through
# entry points), which the tests train, evaluate, plot and compare.
# [docs]: MkDocs, Material and mkdocstrings for `make docs` and `make docs-build`.
# [tune], [report], [wandb]: Ray Tune for `fastadapt sweep`, rliable for `fastadapt report`,
# the W&B sink (all tested; W&B in offline mode).
# The stamp also depends on this Makefile, so a change to the extras below reinstalls.
$(STAMP): Makefile pyproject.toml constraints.txt examples/fastadapt-example/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,ray,tune,report,wandb,metaworld,docs]" \
		-e examples/fastadapt-example
	touch $(STAMP)

# The demo owns $(DEMO_DIR): it is replaced on every run. fvp_subsample=0.1 computes TRPO's
# Fisher-vector products on 10% of the episodes (faster, similar returns on average; see the
# docs' Performance page).
demo: install
	rm -rf $(DEMO_DIR)
	$(BIN)/fastadapt train maml-trpo/2d-navigation --iterations 50 \
		--set maml-trpo.trpo.fvp_subsample=0.1 --run-dir $(DEMO_DIR)
	$(BIN)/fastadapt evaluate $(DEMO_DIR) --tasks 40 --adaptation-steps 3
	$(BIN)/fastadapt plot $(DEMO_DIR)
	@echo "report: $(DEMO_DIR)/report.png  evaluation: $(DEMO_DIR)/evaluation.json"

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/): served with live reload on 127.0.0.1:8000, or
# built into site/ with every warning (a broken link, a missing API name) an error.
# NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2 (not a build warning).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

docs-build: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: install
	$(BIN)/python benchmarks/maml_trpo_navigation.py
	$(BIN)/python benchmarks/sampler_scaling.py

clean:
	rm -rf $(VENV) runs site
