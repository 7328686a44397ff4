# Two commands matter: `make run` and `make test` (see README.md).
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install run test check bench bench-booking services-stop clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

## run: install, start local PostgreSQL/Redis if none answer, migrate, then web + worker + scheduler
run: install
	@deploy/local/services.sh up
	@deploy/local/services.sh env
	$(BIN)/vapi-ingest migrate
	@grep -q '^VAPI_DEFAULT_ORG_ID=' .env || { \
	  org=$$($(BIN)/vapi-ingest orgs create --name "Demo clinic") && \
	  echo "VAPI_DEFAULT_ORG_ID=$$org" >> .env && \
	  echo "created organization $$org as VAPI_DEFAULT_ORG_ID in .env"; }
	@echo "web on http://127.0.0.1:$${PORT:-8000}; try: $(BIN)/vapi-ingest send ../shared/vapi/payloads"
	@echo "console on http://127.0.0.1:$${PORT:-8000}/console/ (sign in with ADMIN_TOKEN from .env)"
	@# A person is watching: console log lines unless LOG_FORMAT (environment or .env) says otherwise,
	@# coloured only when this output is a terminal (honcho gives each process a pipe).
	@fmt=$${LOG_FORMAT:-$$(sed -n 's/^LOG_FORMAT=//p' .env | tail -n 1)}; \
	colour=$$([ -t 1 ] && echo 1); \
	PATH="$(CURDIR)/$(BIN):$$PATH" LOG_FORMAT=$${fmt:-console} FORCE_COLOR=$${FORCE_COLOR:-$$colour} \
	  $(BIN)/honcho start -f Procfile -p $${PORT:-8000} web worker scheduler

## check: lint (ruff), formatting, types (mypy) and the import contracts (import-linter); under a minute
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: the whole suite against real PostgreSQL and Redis
test: install
	$(BIN)/pytest

## bench: the service benchmark beside its baselines (wrk, pgbench); writes tests/bench/results/<date>.{json,md}
## BENCH_BASELINE=<git ref> also measures that ref's data path in the same run; BENCH_CONSOLE=0 skips console and booking
BENCH_BASELINE ?=
BENCH_CONSOLE ?= 1
bench: install
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || { echo "make bench needs wrk: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m tests.bench.service $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE)) $(if $(filter 0,$(BENCH_CONSOLE)),--no-console)

## bench-booking: booking latency p50/p99 at 1, 10, 50 callers and a same-slot storm, beside SELECT 1
bench-booking: install
	$(BIN)/python -m tests.bench.booking

## services-stop: stop the PostgreSQL/Redis that `make run` started under .data (nothing else)
services-stop:
	@deploy/local/services.sh down

## clean: stop those servers, remove .data and .env, the virtualenv and caches, saying what went
clean:
	@deploy/local/services.sh clean
	@for path in $(VENV) .pytest_cache .mypy_cache .ruff_cache; do \
	  if [ -e "$$path" ]; then rm -rf "$$path" && echo "removed $$path"; fi; done
