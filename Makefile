# Set-up and the two entry points of the README: `make demo` and `make test`.
# torch is pinned to the CPU build that lies on this kind of machine; a GPU user passes their own spec,
# e.g. `make setup TORCH_SPEC=torch` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
DEMO_MODEL ?= hsra-dum-2stg
DEMO_OUT ?= out/demo
SAMPLE := samples/colorchecker

.PHONY: setup demo test bench sample clean browser

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/hsra reconstruct $(SAMPLE)/meas/colorchecker.mat --mask $(SAMPLE)/meas/mask.mat \
		--model $(DEMO_MODEL) -o $(DEMO_OUT)/$(DEMO_MODEL) --overwrite
	$(BIN)/hsra reconstruct $(SAMPLE)/meas/colorchecker.mat --mask $(SAMPLE)/meas/mask.mat \
		--model gap-tv -o $(DEMO_OUT)/gap-tv --overwrite
	@echo "== $(DEMO_MODEL) (shipped weights, the default tag) and gap-tv (no weights) vs the sample's truth =="
	$(BIN)/hsra evaluate $(DEMO_OUT)/$(DEMO_MODEL)/colorchecker.mat $(DEMO_OUT)/gap-tv/colorchecker.mat \
		--truth $(SAMPLE)/cube/colorchecker.mat
	@echo "Cubes, previews (_rgb.png, _bands.png, the trust map _residual.png) and JSON records in $(DEMO_OUT)/"

test: setup
	$(BIN)/python -m pytest -q

# Headless Chromium for the report's browser test (tests/test_report.py skips without it). Installs the Debian /
# Ubuntu package when apt-get is there and we are root (≈15 s here); prints what to do otherwise.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "chromium is installed"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends chromium; \
	else \
		echo "make browser: install chromium with your package manager to run the report's browser test"; \
	fi

bench: setup
	$(BIN)/python benchmarks/bench_models.py

sample: setup
	$(BIN)/python samples/make_sample.py

clean:
	rm -rf $(VENV) out .pytest_cache
