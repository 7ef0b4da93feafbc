# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps

.PHONY: run test lint bench engine clean-engine deps dev-deps node

$(STAMPS):
	@mkdir -p $(STAMPS)

$(STAMPS)/venv: requirements.txt | $(STAMPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(STAMPS)/dev: requirements-dev.txt $(STAMPS)/venv
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

deps: $(STAMPS)/venv
dev-deps: $(STAMPS)/dev

run: deps node
	@$(PY) manage.py migrate --noinput -v0
	@$(PY) manage.py bootstrap
	@$(PY) manage.py runportal --no-engine

test: dev-deps node
	$(PY) -m pytest $(PYTEST_ARGS)

lint: dev-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .
	$(PY) manage.py makemigrations --check --dry-run

# --- Engine environment (vLLM in its own venv; the portal never imports it) -------------
# (owned by the engine work: see docs/engine.md)

# --- Front-end packages from npm (owned by the chat work: see docs/chat.md) --------------
# The stamp lives inside node_modules, so deleting that folder reinstalls it.
NODE_STAMP := node_modules/.portal-installed
node: $(NODE_STAMP)

# npm ci installs exactly package-lock.json; --ignore-scripts: no install scripts run.
$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@
