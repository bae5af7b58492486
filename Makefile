# recsys-spark: set-up and the commands people run. `make nightly` and `make test` are the README's two.
PYTHON ?= python3
DS     ?= 2026-11-26
# STACK=card (default): PySpark 4.0, pyarrow 14, numpy 1, Petastorm, Horovod. STACK=current: the
# newest PySpark, pyarrow, numpy and pandas, no Petastorm or Horovod (train.feed=arrow,
# train.backend=ddp). Each has its own venv and constraints file (README "Stack").
STACK  ?= card
ifeq ($(STACK),card)
VENV        ?= .venv
CONSTRAINTS := constraints.txt
EXTRAS      := dev,card
STACK_SETS  :=
TEST_MARKERS := not benchmark and not mutation and not cluster
AIRFLOW     := 2
AIRFLOW_VENV := .venv-airflow
else ifeq ($(STACK),current)
VENV        ?= .venv-current
CONSTRAINTS := constraints-current.txt
EXTRAS      := dev
STACK_SETS  := --set train.feed=arrow --set train.backend=ddp
TEST_MARKERS := not benchmark and not mutation and not cluster and not card_only and not stack_independent
AIRFLOW     := 3
AIRFLOW_VENV := .venv-airflow3
else
$(error STACK must be card or current, got '$(STACK)')
endif
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export PIP_CONSTRAINT := $(CURDIR)/$(CONSTRAINTS)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install airflow-venv platform-deps platform-up platform-down test-cluster benchmark-cluster nightly test reliability-mutations benchmark dist clean-var clean help

help:
	@echo "make nightly   - run the nightly pipeline for DS=$(DS) on the embedded default (installs first;"
	@echo "                 STACK=current: on the newest PySpark/pyarrow/numpy, Arrow feed, DDP)"
	@echo "make test      - run the test suite (installs first; STACK=current: all but the card_only tests)"
	@echo "make platform-up / platform-down - start / stop PostgreSQL metastore, Spark standalone, Thrift Server"
	@echo "make test-cluster - the cluster tests on the platform (starts and stops it)"
	@echo "make benchmark-cluster - a night on local[2] vs the standalone cluster, readers during publish"
	@echo "make reliability-mutations - remove each reliability protection in turn; its test must fail (~25 min)"
	@echo "make benchmark - run every benchmark (slow, about 75 minutes; writes benchmarks/results/*.json)"
	@echo "make dist      - build dist/*.whl and dist/recsys_spark.zip (spark-submit --py-files)"
	@echo "make clean-var - delete the local warehouse, metastore and artifacts under ./var"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.py $(CONSTRAINTS) scripts/install_horovod.sh
	$(BIN)/python -m pip install --quiet "pip==24.3.1" wheel
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	if [ "$(STACK)" = card ]; then PYTHON=$(BIN)/python bash scripts/install_horovod.sh; fi
	touch $(STAMP)

install: $(STAMP)

# Airflow (for the DAG test) lives in its own venv: its pins conflict with the job stack. Idempotent.
# card: Airflow 2.10.5 (.venv-airflow); current: Airflow 3 (.venv-airflow3). tests/test_dag.py picks the same.
airflow-venv: $(BIN)/python
	PYTHON=$(BIN)/python bash scripts/airflow_venv.sh $(AIRFLOW_VENV) $(AIRFLOW)

# The platform's Debian packages (PostgreSQL 15 and its JDBC driver); a no-op when they are there.
PLATFORM_PACKAGES := postgresql libpostgresql-jdbc-java
platform-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ ! -f /usr/share/java/postgresql.jar ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(PLATFORM_PACKAGES); \
	fi

platform-up: install platform-deps
	bash scripts/platform.sh up

platform-down:
	bash scripts/platform.sh down

# The cluster tests start the platform and always stop it, pass or fail.
test-cluster: platform-up
	$(BIN)/python -m pytest -q -m cluster; status=$$?; bash scripts/platform.sh down; exit $$status

# One night on local[2] vs the standalone cluster, and JDBC readers during a publish (~15 minutes).
benchmark-cluster: platform-up
	$(BIN)/python -m benchmarks.bench_cluster; status=$$?; bash scripts/platform.sh down; exit $$status

nightly: install
	$(BIN)/recsys nightly --ds $(DS) $(STACK_SETS)

# STACK=current: the same suite minus the card_only tests (Petastorm and Horovod themselves, pytest.ini)
# and the stack_independent ones (they drive .venv-current in subprocesses: the card run already ran
# them); the others take the feed and backend this venv runs (tests/_stack.py).
test: install airflow-venv
	$(BIN)/python -m pytest -q -m "$(TEST_MARKERS)" --durations=20

reliability-mutations: install
	$(BIN)/python -m pytest -q -s -m mutation tests/reliability/test_protections_matter.py

benchmark: install
	$(BIN)/python benchmarks/bench_build_sequences.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python -m benchmarks.bench_feeds
	$(BIN)/python benchmarks/bench_scoring.py
	$(BIN)/python -m benchmarks.bench_similar_items
	$(BIN)/python -m benchmarks.bench_live
	$(BIN)/python benchmarks/real_data.py
	$(BIN)/python benchmarks/real_data_lstm.py

dist: install
	rm -rf dist
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation -w dist .
	$(BIN)/python scripts/package_zip.py dist/recsys_spark.zip
	cp -r jobs conf dist/

clean-var:
	rm -rf var spark-warehouse metastore_db derby.log

clean: clean-var
	rm -rf .venv .venv-current .venv-airflow .venv-airflow3 build dist *.egg-info
