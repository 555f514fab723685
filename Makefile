# holistic-lab: two commands on a fresh machine.
#   make lab   set up .venv/ and open the course in JupyterLab
#   make test  set up .venv/ and run the library tests and the notebooks (nbval)
# Set-up is idempotent: it reinstalls only when pyproject.toml or requirements.lock change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 3
# The fixture pack (real annotated images for chapters 01-05 and the tests): $HOLISTIC_LAB_DATA if set,
# else ../shared/fixtures/mmpose when it is there. Without either, notebooks download it (checksummed)
# on first use and the tests that need it are skipped with the reason.
SHARED_PACK := $(abspath ../shared/fixtures/mmpose)
ifneq ($(wildcard $(SHARED_PACK)/SHA256SUMS),)
export HOLISTIC_LAB_DATA ?= $(SHARED_PACK)
endif

.PHONY: setup lab test test-lib test-notebooks bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c requirements.lock -e ".[dev,compare]"
	@touch $(STAMP)

# --no-browser: print the URL instead of opening a browser (works headless); root
# (containers, CI machines) needs --allow-root.
lab: setup
	@if [ -n "$$HOLISTIC_LAB_DATA" ]; then echo "fixture pack: $$HOLISTIC_LAB_DATA"; \
	else echo "fixture pack: not on this machine; notebooks 01-05 download it (checksummed) on first use." \
	  "Offline: set HOLISTIC_LAB_DATA to a copy of the mmpose fixture folder."; fi
	@echo "JupyterLab prints its URL with a ?token=... below: open that whole URL."
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

test: setup test-lib test-notebooks

test-lib: setup
	$(PY) -m pytest --durations=15 tests

test-notebooks: setup
	$(PY) -m pytest --durations=15 --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

clean:
	rm -rf $(VENV) .pytest_cache
