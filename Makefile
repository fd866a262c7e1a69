# Two entry points, both self-contained on a machine with only Python 3.11 and make:
#   make demo   build a small dataset from the bundled real sample videos into out/demo
#   make test   run the whole test suite (slow real-model tests included)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast install clean

$(STAMP): pyproject.toml infra/constraints-cpu.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c infra/constraints-cpu.txt -e '.[test]'
	@# espeak-ng synthesises the speech the speech-teacher test transcribes (no sample video has speech).
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq espeak-ng) || \
	      echo "warning: apt-get could not install espeak-ng; tests/test_teacher_speech.py will be skipped"; \
	  else \
	    echo "note: espeak-ng is not installed and this is not root with apt-get: install it yourself" \
	         "(sudo apt-get install espeak-ng) or tests/test_teacher_speech.py will be skipped"; \
	  fi; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vidcurate demo --output out/demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache
