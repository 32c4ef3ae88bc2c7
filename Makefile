PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install install-test demo test lint bench

# torch first, pinned: the CPU build lies on local disk; a bare `torch` would pull a CUDA build.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .

install-test: install
	$(PIP) install -q -e '.[test]'

demo: install
	mpqc quantize --scheme w8a8 -o build/demo_w8a8.onnx
	mpqc quantize --scheme w4a8 -o build/demo_w4a8.onnx

test: install-test
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check mpqc passes targets models tests benchmarks

bench: install
	$(PYTHON) benchmarks/vs_ort_quantize_static.py
