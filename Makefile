# Two commands on a fresh machine: `make demo` (install + main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; a machine that already has the torch it wants can pass TORCH= (empty)
# together with VENV_FLAGS=--system-site-packages to reuse it.
TORCH ?= torch==2.13.0
VENV_FLAGS ?=

.PHONY: install demo test test-slow clean

$(BIN)/adadiffsr: pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[serve,dev]"
	touch $@

install: $(BIN)/adadiffsr

demo: install
	mkdir -p out
	$(BIN)/adadiffsr upscale assets/coffee-lr.png -o out/coffee-x4.png \
		--report out/coffee-x4.json --step-map out/coffee-x4-steps.png

test: install
	$(BIN)/python -m pytest -q

# The slow tier too (a local Ray cluster with 2 workers: minutes on a 2-core machine).
test-slow: install
	$(BIN)/python -m pip install -q -e ".[ray]"
	ADADIFFSR_SLOW=1 $(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) out .pytest_cache
