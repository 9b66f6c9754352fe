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

NEO4J  := $(PY) tests/neo4j/launch.py
# The modules of the package folders (pyproject's package-dir): the strict editable install
# links each file, so a module added or removed needs a re-install. The list is rewritten only
# when it changes, so editing a module does not re-install.
MODULES := $(VENV)/.modules

.PHONY: run demo test neo4j lint bench bench-small clean venv FORCE

# The virtual environment with LineageHub installed (editable) with the extras $(1). Strict
# editable mode: the package is a tree of links to the source files, laid out as installed
# (hub/ as lineagehub/, graph/ as lineagehub/graph/, ...), so tools can follow every import.
define install
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(1)]' --config-settings editable_mode=strict
	touch $@
endef

$(MODULES): FORCE
	@mkdir -p $(VENV)
	@find hub graph schema ingest -name '*.py' -not -path '*/__pycache__/*' | LC_ALL=C sort > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(STAMP): pyproject.toml $(MODULES)
	$(call install,dev)

venv: $(STAMP)

# The main job needs only the runtime and scikit-learn (for the demo's real training).
$(RUNSTAMP): pyproject.toml $(MODULES)
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

# The tests, on SQLite and on a real Neo4j: unless LINEAGEHUB_TEST_NEO4J_URI names a server,
# Neo4j Community 5.26 (Maven Central, cached in ~/.m2) is started on 127.0.0.1 for the run
# and stopped afterwards.
test: $(STAMP) $(CYPHER)
	$(NEO4J) run -- $(PY) -m pytest

# A throw-away Neo4j for running single tests by hand: prints the variables to export.
neo4j: $(STAMP)
	$(NEO4J) serve

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/graph_store.py

bench-small: $(STAMP)
	$(PY) benchmarks/graph_store.py --nodes 100000

clean:
	rm -rf $(VENV) build dist *.egg-info tests/cypher/node_modules tests/neo4j/target .pytest_cache .mypy_cache .ruff_cache
