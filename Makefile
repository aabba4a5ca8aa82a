# Ampere: the two README commands (make demo, make test) and their helpers.
# The interpreter the virtualenv is built with: the fastest-built python3.11 found (tools/pick-python says why);
# `make test PYTHON=/path/to/python3.11` overrides it. Deferred (=, not :=): looked for only when .venv is built.
PYTHON ?= $(shell sh tools/pick-python)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= /tmp/ampere-demo

.PHONY: test demo stop venv bench clean fuzz postgres-deps conformance conformance-upstream lnprototest-venv

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@# Byte-compile as a wheel install would (an editable install does not): ampd's launch time depends on it,
	@# and PYTHONDONTWRITEBYTECODE environments would otherwise compile every module at every start.
	$(PY) -m compileall -q src >/dev/null
	touch $(STAMP)

venv: $(STAMP)

# PostgreSQL for the tests on both databases (issue 19): installed from the OS packages when missing and
# possible (CI machines start bare and run as root); otherwise those tests skip, saying why.
postgres-deps:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing PostgreSQL (apt-get install postgresql)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
	    || echo "PostgreSQL could not be installed: its tests will be skipped"; \
	else echo "PostgreSQL is not installed (initdb, pg_ctl): its tests will be skipped"; fi

test: $(STAMP) postgres-deps
	$(PY) -m pytest -n 2 -q -p no:cacheprovider $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m ampere.demo start --dir $(DEMO_DIR)

stop:
	@test -x $(PY) && $(PY) -m ampere.demo stop --dir $(DEMO_DIR) || true

# Every fuzz target for FUZZ_SECONDS each (tests/fuzz/; the short seeded run is part of make test).
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	$(PY) tests/fuzz/long_run.py $(FUZZ_SECONDS)

# BOLT conformance with lnprototest (tests/conformance): its own venv (it pins pyln-client < 26), then the
# scripts against ampd, verbosely, with the longer set.  The main set is part of `make test` too.
lnprototest-venv: $(STAMP)
	$(PY) tests/conformance/test_lnprototest.py

conformance: lnprototest-venv
	LNPT_ALL=1 $(PY) -m pytest -n 2 -v -s -p no:cacheprovider tests/conformance

# lnprototest's own BOLT 1/2/7 scripts (its GitHub repository at a pinned commit, fetched into ~/.cache/ampere at
# test time, never committed) against ampd with our Runner.  Offline it says so and succeeds (skipped); set
# LNPROTOTEST_SRC to a local clone to run without GitHub.  About 3 minutes on 2 cores: not part of `make test`.
conformance-upstream: lnprototest-venv
	@if $(PY) tests/conformance/test_lnprototest_upstream.py; then \
	  LNPT_UPSTREAM=1 $(PY) -m pytest -n 2 -v -rA -p no:cacheprovider tests/conformance/test_lnprototest_upstream.py; fi

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-lnprototest build src/*.egg-info
