# Two commands for a fresh machine: `make demo` and `make test`.
# Both create (or update) .venv in the repo root from pyproject.toml first.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test bench clean screenshots

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/oml-viz demo

test: install
	$(VENV)/bin/python -m pytest

screenshots: install   # README pictures: demo figures + the dashboard in JupyterLab/Chromium -> docs/images/
	$(VENV)/bin/python tools/screenshots.py

bench: install
	$(VENV)/bin/python benchmarks/bench_retrieval.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
