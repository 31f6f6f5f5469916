# The two commands a newcomer needs: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: demo test test-spark lint typecheck install lock clean bench bench-full bench-spark attacks

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tessera demo $(ARGS)

# Two pytest workers (pytest-xdist), each running whole modules, so a module's federation and
# its tests stay in one process: while one waits on its processes, the other runs.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

test: $(STAMP) lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

# The Spark backend on a local Spark session (Java 17): the `spark` extra (pyspark, ~500 MB,
# ~40 s to install) only here, not in `make install`.
SPARK_STAMP := $(VENV)/.spark-installed

$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,spark]'
	touch $(SPARK_STAMP)

# The Spark node behind the gateway in a run of its own: after the backend's tests in the same
# process, its node once missed its 300 s to get ready (alone: ready in about a minute).
test-spark: $(SPARK_STAMP)
	$(BIN)/pytest -m spark tests/connectors/test_backend_spark.py $(ARGS)
	$(BIN)/pytest -m spark tests/connectors/test_spark_ledger.py $(ARGS)
	$(BIN)/pytest -m spark tests/integration/test_spark_node.py $(ARGS)
	$(BIN)/pytest -m spark tests/bench/test_spark_scale.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Benchmarks (bench/README.md): figures as ratios against a baseline measured in the same run.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench $(ARGS)

bench-full: $(BENCH_STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench --full $(ARGS)

# Spark against DuckDB per question shape at 1M, 3M and 10M persons, and the model of a national
# hub (bench/README.md): about half an hour on an idle 2-core machine, the CDMs kept in
# .tessera/bench/.
# ARGS="--sizes 1000000 --runs 1"; ARGS=--model-only reports the last figures again.
bench-spark: $(SPARK_STAMP)
	$(BIN)/python -m bench.spark_scale $(ARGS)

# The attack simulator (bench/attacks): every class of attack across questions against real
# processes; exits 1 when one pins a count below the minimum. ARGS="--postgres", "--quick".
attacks: $(STAMP)
	$(BIN)/python -m bench.attacks $(ARGS)

# Refresh the exact versions after changing the ranges in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^tessera' > constraints.txt

clean:
	rm -rf $(VENV) .tessera .mypy_cache .ruff_cache .pytest_cache
