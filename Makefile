# The README's commands. Needs GNU make and Python 3.11+ (python3.11, else python3); everything else is installed
# into .venv on first use. PostgreSQL and Redis come from DATABASE_URL / REDIS_URL, or are started privately under
# ./.data/ when those are unset (see cecilia/dev/).
#
#   make run                 migrate, load the demo data, serve web + worker + beat on http://127.0.0.1:8000/admin/
#   make test [ARGS=...]     the test suite (ARGS goes to pytest, e.g. ARGS="-x tests/scheduling")
#   make lint                ruff
#   make venv                create .venv with the development tools (for an editor)
#   make browser             make sure the Chromium the browser tests drive is installed

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
PIP := $(VENV_PYTHON) -m pip --disable-pip-version-check --no-input
# Stamps record which requirements file was installed into .venv; make reinstalls only when the file is newer.
RUNTIME_STAMP := $(VENV)/.installed-requirements.txt
DEV_STAMP := $(VENV)/.installed-requirements-dev.txt
# The browser tests read CHROMIUM_PATH too (tests/browser/conftest.py).
CHROMIUM_PATH ?= /usr/bin/chromium
ARGS ?=

# The Playwright package must never download a browser: the browser tests use Debian's Chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
.PHONY: help run test lint venv browser

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

run: $(RUNTIME_STAMP)
	$(VENV_PYTHON) -m cecilia.dev run

# pytest's exit status 5 means "no tests collected": a failure here, never a pass.
test: $(DEV_STAMP) browser
	@status=0; $(VENV_PYTHON) -m cecilia.dev exec -- python -m pytest $(ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure." >&2; fi; \
	exit $$status

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

venv: $(DEV_STAMP)

$(VENV_PYTHON):
	@if [ -z "$(PYTHON)" ]; then echo "make: Python 3.11+ is needed (python3.11 or python3 on PATH)." >&2; exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "make: $(PYTHON) is not Python 3.11 or newer ($$($(PYTHON) --version 2>&1 | head -n 1))." >&2; \
		echo "      Install Python 3.11, or name one: make $(MAKECMDGOALS) PYTHON=/path/to/python3.11" >&2; exit 1; }
	@echo "Creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "make: could not create $(VENV). On Debian/Ubuntu: apt-get install python3-venv (or python3.11-venv)." >&2; exit 1; }

$(RUNTIME_STAMP): requirements.txt | $(VENV_PYTHON)
	@echo "Installing requirements.txt into $(VENV)"
	$(PIP) install -q -r requirements.txt
	@touch $@

# requirements-dev.txt includes requirements.txt, so this installation satisfies `run` too.
$(DEV_STAMP): requirements-dev.txt requirements.txt | $(VENV_PYTHON)
	@echo "Installing requirements-dev.txt into $(VENV)"
	$(PIP) install -q -r requirements-dev.txt
	@touch $@ $(RUNTIME_STAMP)

browser:
	@if [ -x $(CHROMIUM_PATH) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Chromium for the browser tests (apt-get install chromium)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		if apt-get update -qq && apt-get install -y -qq chromium >/dev/null; then exit 0; fi; \
		echo "make: could not install Chromium with apt-get (see above); the browser tests cannot run." >&2; \
	else \
		echo "make: $(CHROMIUM_PATH) is missing and cannot be installed here (needs root and apt-get)." >&2; \
		echo "      Install Debian's chromium package (sudo apt-get install chromium) to run the browser tests." >&2; \
	fi
