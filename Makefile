# One entry point for setup, the demo and the tests. Every target creates and
# reuses the local virtual environment in .venv; nothing is installed by hand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo serve test soak bench schemas lint clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## The main job: embedded broker, projector + API, and a simulated campaign stream.
demo: $(STAMP)
	$(BIN)/projector demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

## Long fault-injection and scale tests (not part of CI).
soak: $(STAMP)
	$(BIN)/python -m pytest -m slow -p no:cacheprovider $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run_all $(ARGS)

## Regenerate the JSON Schemas checked into docs/schemas/.
schemas: $(STAMP)
	$(BIN)/projector export-schemas

lint: $(STAMP)
	$(BIN)/ruff check schemas projector api tests

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
