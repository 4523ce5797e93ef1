# One entry point for every task. Targets work from a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
GEN    := libs/generated
PROTOS := $(shell find protos -name '*.proto')

.PHONY: setup protos lint format migrate run test unit bench bench-overload docs constraints clean createsuperuser

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -c "import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'courseplatform_generated.pth').write_text(str(pathlib.Path('$(GEN)').resolve()) + '\n')"
	touch $@

setup: $(VENV)/.installed protos ## venv, dependencies and generated protobuf code

# Generated code is derived from protos/ only; it is never committed or edited by hand.
protos: $(GEN)/.stamp
$(GEN)/.stamp: $(VENV)/.installed $(PROTOS)
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -I protos --python_out=$(GEN) --pyi_out=$(GEN) --grpc_python_out=$(GEN) $(PROTOS)
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@bash .ci/buf-lint

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: setup ## apply every service's migrations to DATABASE_URL (or the embedded server)
	$(PY) -m libs.devstack migrate

# An administrator: `make createsuperuser EMAIL=ann@example.com FULL_NAME="Ann Admin"` (the
# password is asked twice, or read as one line from a non-terminal stdin).
createsuperuser: setup ## create (or promote) an administrator in DATABASE_URL (or the embedded server)
	$(PY) -m services.identity create-admin --email "$(EMAIL)" --full-name "$(FULL_NAME)"

run: setup ## the whole platform on this machine
	$(PY) -m libs.devstack run

test: setup ## the whole suite against real PostgreSQL, Redis, gRPC and SMTP
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup ## the fast tier: tests marked unit (domain rules, libs), no database, Redis or service
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

bench: setup
	$(PY) -m tests.bench

bench-overload: setup ## overload scenarios at 16/128/512 connections (docs/overload.md)
	$(PY) -m tests.bench.overload

docs: setup ## AsyncAPI document of the notifier's stream (git-ignored: generated, never stale)
	$(PY) -m services.notifier.asyncapi > docs/asyncapi.json

constraints: setup ## rewrite constraints.txt: the exact versions installed in the venv
	$(PY) -m tests.constraints

clean:
	rm -rf $(VENV) $(GEN) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache docs/asyncapi.json
