# The two commands: `make run` (the main job on the embedded default store) and `make test`.
# Each creates its own virtual environment in .venv and installs what it needs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
CYPHER := tests/cypher/node_modules/.package-lock.json

.PHONY: run test lint bench bench-small clean venv

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Neo4j's own Cypher front end, to check every statement the Neo4j backend can send.
$(CYPHER): tests/cypher/package.json tests/cypher/package-lock.json
	npm ci --prefix tests/cypher --no-audit --no-fund --loglevel=error

run: $(STAMP)
	$(PY) -m lineagehub example

test: $(STAMP) $(CYPHER)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/graph_store.py

bench-small: $(STAMP)
	$(PY) benchmarks/graph_store.py --nodes 100000

clean:
	rm -rf $(VENV) build dist *.egg-info tests/cypher/node_modules .pytest_cache .mypy_cache .ruff_cache
