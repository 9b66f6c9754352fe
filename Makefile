# The two commands: `make run` (the main job: the demo, then the server, on the embedded default
# store) and `make test`.
# Each creates its own virtual environment in .venv and installs what it needs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
RUNSTAMP := $(VENV)/.installed-run
HOST   ?= 127.0.0.1
PORT   ?= 8000
CYPHER := tests/cypher/node_modules/.package-lock.json

.PHONY: run demo test lint bench bench-small clean venv

# The virtual environment with LineageHub installed (editable) with the extras $(1).
define install
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(1)]'
	touch $@
endef

$(STAMP): pyproject.toml
	$(call install,dev)

venv: $(STAMP)

# The main job needs only the runtime and scikit-learn (for the demo's real training).
$(RUNSTAMP): pyproject.toml
	$(call install,sklearn)

# Neo4j's own Cypher front end, to check every statement the Neo4j backend can send.
$(CYPHER): tests/cypher/package.json tests/cypher/package-lock.json
	npm ci --prefix tests/cypher --no-audit --no-fund --loglevel=error

# The demo (real training on scikit-learn's bundled data, a governed promotion, a deployment,
# a lineage picture), then the server with GraphiQL on http://$(HOST):$(PORT)/graphql.
run: $(RUNSTAMP)
	$(PY) -m lineagehub demo --serve --host $(HOST) --port $(PORT)

demo: $(RUNSTAMP)
	$(PY) -m lineagehub demo

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
