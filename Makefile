# Two commands for a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench soak lint lock audit clean

# Installs exactly what the lock pins (with hashes), then the project itself without deps.
$(STAMP): pyproject.toml requirements-test.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements-test.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m gateway.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Chaos soak (README "Reliability"): SOAK_ARGS="--duration 600 --seed 7"; needs PostgreSQL.
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/mypy --strict gateway

# After changing a dependency in pyproject.toml: re-pin both locks (needs the registry).
TOOLS := .venv-tools
LOCK := $(TOOLS)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -q
lock:
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q 'uv>=0.5,<1'
	$(LOCK) -o requirements.lock
	$(LOCK) --extra test -o requirements-test.lock

# pip-audit over both locks (skipped with one line when the registry cannot be reached).
audit:
	bash .ci/audit

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info gateway.db
