# npanalytics: two commands set up a fresh machine.
#   make report   create .venv, install, write the HTML report of the bundled dataset to report/
#   make test     install everything the tests need (system packages too, when root
#                 on Debian), then run the test suite
# .ci/run calls `make test`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the tests use: the lab's kernel data plane, the conntrack tools, and
# prometheus/promtool (the metrics writers are checked against the real server), and
# chromium + its driver (the HTML report is opened in headless Chromium).
APT_PACKAGES := iptables nftables conntrack iproute2 procps prometheus chromium chromium-driver
PYTEST_ARGS ?=

.PHONY: report test venv system-deps bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "npanalytics needs Python >= 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $@

venv: $(STAMP)

# The HTML report of the bundled default dataset, in report/ (the command prints the path).
report: venv
	$(BIN)/npanalytics report --out report

system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; \
	  for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	else \
	  echo "not root, or no apt-get: install $(APT_PACKAGES) yourself; tests that need them skip (and fail under CI=true)"; \
	fi

test: system-deps venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) bench/.work .pytest_cache .hypothesis
