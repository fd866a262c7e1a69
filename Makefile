# Two entry points, both self-contained on a machine with only Python 3.11 and make:
#   make demo   build a small dataset from the bundled real sample videos into out/demo
#   make test   run the whole test suite (slow real-model tests included)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_SYSTEM := $(VENV)/.test-system-packages
PYTEST_ARGS ?=
# Test files spread over up to 4 processes (pytest-xdist), a file's tests in one process so its
# module fixtures are built once: on 2 cores 48 min instead of about 70 serially (stop 40).
# TEST_WORKERS=0 runs serially (pytest -s, pdb).
TEST_WORKERS ?= auto
PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,--numprocesses=$(TEST_WORKERS) --maxprocesses=4 --dist loadfile)

.PHONY: demo test test-fast bench bench-quick install clean

$(STAMP): pyproject.toml infra/constraints-cpu.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c infra/constraints-cpu.txt -e '.[test]'
	touch $(STAMP)

# System packages only the tests need, installed once per venv (as root with apt-get; otherwise a note).
$(TEST_SYSTEM): $(STAMP)
	@# System packages of the tests: espeak-ng synthesises the speech the speech-teacher test transcribes
	@# (no sample video has speech); chromium + chromium-driver run the annotation page's browser test.
	@missing=""; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) || \
	      echo "warning: apt-get could not install$$missing; the tests needing them will be skipped"; \
	  else \
	    echo "note:$$missing not installed and this is not root with apt-get: install them yourself" \
	         "(sudo apt-get install$$missing) or the tests needing them will be skipped"; \
	  fi; \
	fi
	touch $(TEST_SYSTEM)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vidcurate demo --output out/demo

# The benchmark suite (docs/PERFORMANCE.md): every benchmark as ratios, the figures in out/bench.json.
bench: $(STAMP)
	$(BIN)/vidcurate bench --json out/bench.json

bench-quick: $(STAMP)
	$(BIN)/vidcurate bench --quick --json out/bench-quick.json

test: $(STAMP) $(TEST_SYSTEM)
	$(BIN)/python -m pytest $(PARALLEL) $(PYTEST_ARGS)

test-fast: $(STAMP) $(TEST_SYSTEM)
	$(BIN)/python -m pytest -m "not slow" $(PARALLEL) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache
