# lakelm: the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv and install what is missing (torch and the Delta jars download once).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lakelm-installed
LAKE   ?= lake

.PHONY: demo test install lint clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m jobs.delta_jars
	touch $(STAMP)

install: $(STAMP)

# The main job end to end on the bundled sample corpus (jobs/sample_data), into ./$(LAKE).
demo: $(STAMP)
	$(PY) -m jobs.demo --lake $(LAKE)

# Unit tests (no JVM) and Spark tests (one local session, spark-submit, a standalone cluster).
test: $(STAMP)
	$(PY) -m jobs.delta_jars --check
	$(PY) -m pytest -m "not gpu" tests

# ruff.toml holds the rules; CI (.ci/run) runs this before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check jobs udfs model tests bench setup.py
	$(VENV)/bin/ruff format --check jobs udfs model tests bench setup.py

clean:
	rm -rf $(LAKE) spark-warehouse metastore_db derby.log .pytest_cache
