# Tasks for developers; CI runs .ci/run (the same checks, from a fresh virtualenv).
# Everything uses the project virtualenv .venv that `make install` creates.

VENV   ?= .venv
PY     := $(VENV)/bin/python
SOM    := $(VENV)/bin/som
PYTEST := $(PY) -m pytest

.PHONY: install lint test-fast test-all bench chaos schemas up

install:  ## virtualenv with the project and its test tools; installs the pre-commit hooks
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test]"
	$(VENV)/bin/pre-commit install

lint:  ## ruff check, formatting check, strict mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services som

test-fast:  ## everything but the slow tests, few Hypothesis examples (the default `dev` profile)
	$(PYTEST) -q -m "not slow" -n 2 --dist loadgroup

test-all:  ## the whole suite as CI runs it: slow tests too, many Hypothesis examples
	HYPOTHESIS_PROFILE=ci $(PYTEST) -q -n 2 --dist loadgroup

bench:  ## 20,000 direct orders through the worker set: throughput and p50/p99, order to invoice
	$(SOM) bench --orders 20000 --baseline --json

chaos:  ## worker kills and database restarts under load, then a check that nothing was lost or doubled
	$(SOM) chaos --orders 5000 --rate 100 --kills 8 --db-restarts 2 --db-down-seconds 60 --replicas 2 --seed 1

schemas:  ## regenerate schemas/ from the contracts (`som schemas --check` only compares), asyncapi.yaml, k8s manifests
	$(SOM) schemas
	$(SOM) asyncapi
	$(SOM) k8s generate

up:  ## broker, database and all four workers with sample orders; Ctrl-C stops everything
	$(SOM) up --demo
