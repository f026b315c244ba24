# streamrag: `make demo` runs the main job, `make test` runs the tests. Both set everything up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

APT_PACKAGES := tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd tesseract-ocr-chi-sim tesseract-ocr-ara tesseract-ocr-kor tesseract-ocr-fra tesseract-ocr-deu

.PHONY: demo test bench bench-quick bench-full bench-all apt venv clean

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# CPU torch first: an open range would pull a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test,demo]'
	touch $@

venv: $(VENV)/.installed

# Debian packages the converter uses (OCR); installed when missing, quietly skipped without root.
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "note: apt packages missing:$$missing (run as root to install)"; fi; \
	fi

demo: apt venv
	$(PY) -m streamrag._demo .demo/haldvik-holm.pdf
	$(VENV)/bin/streamrag ask .demo/haldvik-holm.pdf --store .demo/store --pace 1.0 \
	  -q "In which year was the Haldvik Holm Field Station founded, and by whom?" \
	  -q "How much water do the rainwater cisterns hold?" \
	  -q "What is the code word for evacuating the whole island?"

test: apt venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# ~10 min on 2 cores: ttfa (15 pages, 3 runs) and perf (all sections but the 5,000-page memory run, the
# timeline PNG); `make bench-quick` leaves out the 352-page book; `make bench-full` adds 5,000 pages.
bench: venv
	$(PY) benchmarks/ttfa.py
	$(PY) benchmarks/perf.py

bench-quick: venv
	$(PY) benchmarks/ttfa.py --runs 1
	$(PY) benchmarks/perf.py --quick

bench-full: venv
	$(PY) benchmarks/ttfa.py
	$(PY) benchmarks/perf.py --full

# Every other benchmark (each prints its tables; figures and commands are in benchmarks/README.md):
# retrieval quality (#4), faults (#5), scale-out (#7), the local converter against PDFReader and
# pdfplumber (#8), embedding backends (torch vs. OpenVINO int8 vs. int8 ONNX, #6) and CPU by stage (#6);
# the converter and backend comparisons need the `bench` extra.
# Over an hour on 2 cores.
bench-all: bench apt
	$(PIP) install --quiet -e '.[test,demo,bench]'
	$(PY) benchmarks/retrieval.py
	$(PY) benchmarks/faults.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/convert.py
	$(PY) benchmarks/embed_backends.py
	$(PY) benchmarks/cpu_share.py
	$(PY) benchmarks/cpu_share.py --embed-backend torch

clean:
	rm -rf .demo .pytest_cache .mypy_cache .ruff_cache
