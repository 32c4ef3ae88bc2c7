PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install install-test demo test bench

# torch first, pinned: the CPU build lies on local disk; a bare `torch` would pull a CUDA build.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .

install-test: install
	$(PIP) install -q -e '.[test]'

demo: install
	$(PYTHON) -m mpqc analyze
	$(PYTHON) -m mpqc quantize --scheme w8a8 -o build/demo_w8a8.onnx
	$(PYTHON) -m mpqc quantize --scheme w4a8 --calib-method mse -o build/demo_w4a8.onnx

test: install-test
	$(PYTHON) -m ruff check mpqc passes targets models tests benchmarks
	$(PYTHON) -m pytest

bench: install
	$(PYTHON) benchmarks/vs_ort_quantize_static.py
