# The two commands in the README are `make run` and `make test`; everything they need to
# install is installed from here, so a fresh Debian machine (as root) needs nothing else.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# The peer bench's own environment (Celery, Dramatiq): never the product's dependencies.
BENCH_VENV  := .bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: run test lint docs unit servers bench bench-stomp bench-peers bench-db fuzz clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh

## run: the daemon on the embedded SQLite default with the demo plugin and a demo producer
run: $(STAMP)
	scripts/run-demo.sh

## test: install, start the real servers the tests use, lint, then the whole suite: first every
## test that shares the servers peacefully, in TEST_JOBS processes (a module's tests in one), then
## the `serial` ones, which stop or reconfigure a shared server, alone.  Each part lists its
## slowest tests: the suite must stay well under 30 minutes.  Exit 5 is "none selected".
TEST_JOBS ?= 3
test: $(STAMP) servers lint
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile -m "not serial" --durations=30 $(PYTEST_ARGS); \
	  parallel=$$?; \
	  $(PY) -m pytest -m serial --durations=10 $(PYTEST_ARGS); serial=$$?; \
	  for rc in $$parallel $$serial; do [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc; done

## lint: ruff, mypy, import-linter (layers import downward only: pyproject.toml) and the docs
## site built strictly (a broken link or anchor, or a page missing from the nav, fails it), clean
lint: $(STAMP)
	$(VENV)/bin/ruff check statusq plugins scripts tests $(wildcard bench)
	$(VENV)/bin/ruff format --check statusq plugins scripts tests $(wildcard bench)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(MKDOCS) build --strict

# PYTHONPATH: the hook that generates the config reference imports this checkout's statusq.
MKDOCS := NO_MKDOCS_2_WARNING=1 PYTHONPATH=. $(VENV)/bin/mkdocs

## docs: the documentation site from docs/ and mkdocs.yml into site/ (open site/index.html)
docs: $(STAMP)
	$(MKDOCS) build --strict

## unit: the fast tests only (no servers)
unit: $(STAMP)
	$(PY) -m pytest -m "not postgres and not e2e" $(PYTEST_ARGS)

## servers: install and start the servers the tests talk to (fails under CI=true if one can't)
servers:
	scripts/servers/ensure-all.sh

$(BENCH_STAMP): bench/peers/requirements.txt $(STAMP)
	[ -x $(BENCH_VENV)/bin/python ] || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -r bench/peers/requirements.txt
	touch $@

## bench: the parts below, one after the other (never side by side, even under make -j)
bench: $(STAMP) $(BENCH_STAMP) servers
	$(PY) bench/run.py
	$(PY) bench/dispatch_sim.py
	$(PY) bench/tracing_cost.py
	$(PY) bench/peers/run.py
	$(PY) bench/db/run.py --venv $(BENCH_VENV)

## bench-stomp: throughput and latency against a raw stomp.py baseline measured in the same run
bench-stomp: $(STAMP) servers
	$(PY) bench/run.py
	$(PY) bench/dispatch_sim.py

## bench-peers: statusq beside Celery and Dramatiq on one RabbitMQ node (bench/peers/run.py)
bench-peers: $(STAMP) $(BENCH_STAMP) servers
	$(PY) bench/peers/run.py

## bench-db: the database backend (SQLite, PostgreSQL) beside PgQueuer on one PostgreSQL server
## (bench/db/run.py; its own database, statusq_bench, made if missing)
bench-db: $(STAMP) $(BENCH_STAMP) servers
	$(PY) bench/db/run.py --venv $(BENCH_VENV)

## fuzz: each fuzzing target under atheris for FUZZ_SECONDS (default 300); finds go to var/fuzz
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	for target in stomp_frame broker_message item_body control_message config_file; do \
		$(PY) -m tests.fuzz.run $$target -max_total_time=$(FUZZ_SECONDS) -timeout=10 || exit 1; \
	done

clean:
	rm -rf $(VENV) $(BENCH_VENV) var site .mypy_cache .ruff_cache .pytest_cache
