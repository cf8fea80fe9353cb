# The two commands of the README:  `make demo`  and  `make test`.
# Both set up .venv first (idempotent: a stamp file tracks pyproject.toml).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.agpis-installed
# Keep the machines' two cores from stalling each other (../shared/docs/FACTS.md).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup browser demo test test-fast protos docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	# torch pinned in the same command as everything else: nothing may pull a CUDA build.
	$(BIN)/pip install --disable-pip-version-check -q "torch==2.13.0" -e ".[dev,export]"
	# PP-OCR text detector: its wheel wants opencv-python, which would overwrite
	# opencv-contrib's cv2 (and cv2.ximgproc.createEdgeBoxes); its other deps are ours.
	$(BIN)/pip install --disable-pip-version-check -q --no-deps "rapidocr-onnxruntime==1.4.4"
	$(BIN)/python -c "import cv2; cv2.ximgproc.createEdgeBoxes; import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

# The review app's 4 browser tests drive Debian's chromium, never a downloaded browser. As root
# (CI, a container) it is installed here when missing; otherwise those tests are skipped, and
# `sudo apt-get install chromium` (or `sudo make browser`) brings them in.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium for the browser tests (apt-get)"; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null) \
	    || echo "chromium could not be installed: the 4 browser tests will be skipped"; \
	else \
	  echo "chromium is not installed and this is not root: the 4 browser tests will be skipped (sudo apt-get install chromium)"; \
	fi

demo: setup
	$(BIN)/agpis demo

test: setup browser
	$(BIN)/python -m pytest -q -ra

test-fast: setup
	$(BIN)/python -m pytest -q -ra -m "not slow"

protos: setup
	$(BIN)/python scripts/gen_protos.py

docs: setup
	$(BIN)/python scripts/update_readme.py

bench: setup
	$(BIN)/agpis bench --spawn-server

clean:
	rm -rf $(VENV) var .pytest_cache
