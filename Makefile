# driftloop — `make demo` runs the whole loop (drift → retrain → gate) on the embedded stack,
# `make test` runs every test. Both create what they need on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

LOCK_ARGS := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
LOCK_TRAIN_ARGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28

.PHONY: help demo test unit up up-celery down status fixes lint lock-check lock lock-train train-env system-deps venv clean

# Every target, one line each (`make help`); test_makefile_help checks that none is missing.
help:
	@echo "make demo        the whole loop on the embedded stack: champion, serving, drift, retrain, rollout (~11 min)"
	@echo "make test        lint + unit, DAG and integration tests (starts the embedded stack)"
	@echo "make unit        unit and DAG tests only: no servers, no embedded stack"
	@echo "make up          start the stack with Airflow (PostgreSQL, LocalExecutor) and MLflow; prints the UIs' URLs and login"
	@echo "make up-celery   the same with the CeleryExecutor: Redis and two workers (also: make up CELERY=1)"
	@echo "make down        stop it"
	@echo "make status      the stack's components: health, memory, startup time"
	@echo "make lint        ruff check + format check + lock-check"
	@echo "make lock-check  fail when requirements.txt or include/training/requirements.txt is not what its .in compiles to"
	@echo "make fixes       ruff: fix lint and format"
	@echo "make lock        recompile requirements.txt from requirements.in"
	@echo "make lock-train  recompile include/training/requirements.txt from its requirements.in"
	@echo "make venv        the Airflow-side virtualenv .venv (requirements.txt + driftloop + tools/, editable)"
	@echo "make train-env   the training virtualenv .venv-train (torch, ultralytics) for the local backend"
	@echo "make system-deps Debian packages: Pushgateway, promtool, amtool, chromium, redis, PostgreSQL (as root)"
	@echo "make clean       remove .venv, .stack and the caches"
	@echo "make help        this list"
	@echo "the command line: .venv/bin/driftloop --help (stack, demo, synth, ui-check, ledger, settings)"

# The Airflow-side environment: pinned requirements + this package (editable). Re-installed
# only when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml tools/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install --quiet --python $(BIN)/python -r requirements.txt -e . -e tools
	@touch $@

venv: $(STAMP)

# The training environment (torch, ultralytics): the local backend's interpreter. pip, not uv,
# so torch and the CUDA wheels come from the machine's local package index. No pip cache: those
# wheels (~3 GB) are on local disk already, and a cached copy once filled CI's disk.
TRAIN_STAMP := .venv-train/.installed
$(TRAIN_STAMP): include/training/requirements.txt pyproject.toml
	@test -x .venv-train/bin/python || $(PYTHON) -m venv .venv-train
	.venv-train/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir -r include/training/requirements.txt -e .
	@touch $@

train-env: $(TRAIN_STAMP)

# Debian packages for the stack and config checks: the Pushgateway (metrics), promtool and
# amtool, redis-server (the Celery broker of `make up CELERY=1`), the PostgreSQL server
# (`make up`'s metadata DB; usually there already). Optional: without apt (or root) the tests
# that need them skip, metrics degrade.
system-deps:
	@missing=""; \
	for pair in prometheus-pushgateway:prometheus-pushgateway promtool:prometheus amtool:prometheus-alertmanager chromium:chromium; do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; \
	done; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	    || echo "warning: apt-get install$$missing failed; continuing without"; \
	elif [ -n "$$missing" ]; then echo "note: not installed:$$missing (tests that need them skip)"; fi

# The training environment too: the demo trains its models with the local backend.
demo: $(STAMP) $(TRAIN_STAMP) system-deps
	$(BIN)/driftloop demo

# The training environment too: the local-backend training test runs the real entrypoint in it.
test: $(STAMP) $(TRAIN_STAMP) system-deps lint
	$(BIN)/python -m pytest tests

# Unit and DAG tests: no embedded stack (the `stack` fixture refuses to start under
# DRIFTLOOP_TESTS_NO_SERVICES), no integration tests.
unit: $(STAMP)
	DRIFTLOOP_TESTS_NO_SERVICES=1 $(BIN)/python -m pytest tests/unit tests/dags -m "not integration"

lint: $(STAMP) lock-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The lock files are what `make lock` / `make lock-train` would write (offline from uv's cache
# when it can, else from the package index).
lock-check: $(STAMP)
	tools/check-lock.sh $(UV) requirements.in requirements.txt $(LOCK_ARGS)
	tools/check-lock.sh $(UV) include/training/requirements.in include/training/requirements.txt $(LOCK_TRAIN_ARGS)

fixes: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Airflow as in production: PostgreSQL, api-server, scheduler, dag-processor, triggerer (and with
# CELERY=1 Redis and two Celery workers), MLflow, moto S3, Pushgateway. DAGs run unpaused.
up: $(STAMP) system-deps
	$(BIN)/driftloop stack up --ui $(if $(CELERY),--celery)

up-celery:
	$(MAKE) up CELERY=1

down: $(STAMP)
	$(BIN)/driftloop stack down

status: $(STAMP)
	$(BIN)/driftloop stack status

lock: $(STAMP)
	$(UV) pip compile requirements.in -o requirements.txt $(LOCK_ARGS)

lock-train: $(STAMP)
	$(UV) pip compile include/training/requirements.in -o include/training/requirements.txt $(LOCK_TRAIN_ARGS)


clean:
	rm -rf $(VENV) .stack .pytest_cache .ruff_cache
