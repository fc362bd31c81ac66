# Everything runs in a project-local virtualenv, so a fresh machine needs only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-frameworks coverage lint format demo bench soak docs dist clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The Dask tests start a real cluster; they run as a step of their own after the main suite.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not dask" --ignore=tests/frameworks
	$(BIN)/python -m pytest -m dask --ignore=tests/frameworks

# Each framework's tests against its real package, in an environment of its own (noxfile.py).
test-frameworks: $(STAMP)
	$(BIN)/nox --no-color

coverage: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -m "not dask" -q --ignore=tests/frameworks
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# Not in CI: thousands of requests against a real server; prints task counts and memory growth.
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The sdist and the wheel, then a check that the wheel installs and runs in a fresh virtualenv.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python scripts/check_dist.py dist

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage* htmlcov
