# One entry point for setup, the demo and the tests. Every target creates and
# reuses the local virtual environment in .venv; nothing is installed by hand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo serve test soak bench schemas screenshot lint clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Headless Chromium for the dashboard's browser test, from Debian's packages.
# Without root or apt the browser test skips with a reason instead.
BROWSER_STAMP := $(VENV)/.browser
$(BROWSER_STAMP): | $(STAMP)
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser test..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "warning: could not install chromium; the browser test will be skipped"; \
	else echo "note: /usr/bin/chromium is missing; the browser test will be skipped"; fi
	@touch $@

setup: $(STAMP)

## The main job: embedded broker, projector + API, and a simulated campaign stream.
demo: $(STAMP)
	$(BIN)/projector demo $(ARGS)

## The layer contracts first (pyproject.toml [tool.importlinter]), then the suite.
test: $(STAMP) $(BROWSER_STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(ARGS)

## Long fault-injection and scale tests (not part of CI).
soak: $(STAMP)
	$(BIN)/python -m pytest -m slow -p no:cacheprovider $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run_all $(ARGS)

## Regenerate the JSON Schemas checked into docs/schemas/.
schemas: $(STAMP)
	$(BIN)/projector export-schemas

## Refresh docs/dashboard.png on purpose: the dashboard's browser test saves its final
## page where DASHBOARD_SCREENSHOT says (tests never write into the tree themselves).
SCREENSHOT_TEST := tests/service/test_dashboard_browser.py::test_dashboard_shows_a_live_run_in_headless_chromium
screenshot: $(STAMP) $(BROWSER_STAMP)
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	DASHBOARD_SCREENSHOT="$$dir/dashboard.png" $(BIN)/python -m pytest -q -rs -p no:cacheprovider $(SCREENSHOT_TEST) && \
	{ test -s "$$dir/dashboard.png" || { echo "error: no screenshot (the test was skipped, see above)"; exit 1; }; } && \
	cp "$$dir/dashboard.png" docs/dashboard.png && echo "docs/dashboard.png refreshed"

lint: $(STAMP)
	$(BIN)/ruff check schemas projector api service tests
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
