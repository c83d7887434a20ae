#!/usr/bin/env bash
# The device calls behind docs/benchmarks.md's "Engine settings for the shape" (issue 24), after the vLLM payload
# is installed (../shared/tools/device-vllm/provision.sh). Each part fits one device call (< 10 minutes); results
# (JSON + logs) go to $OUT/<part>.tgz and the comparison table to stdout.
#
#   bash benchmarks/rewrite_gpu_calls.sh model         # SmolLM2-135M: GGUF pieces in /root/stash/gguf -> HF folder
#   bash benchmarks/rewrite_gpu_calls.sh small-a       # 135M: raw with vLLM's defaults (the machine's first engine)
#   bash benchmarks/rewrite_gpu_calls.sh small-b       # 135M: raw with the batch settings, the same + ngram speculation
#   bash benchmarks/rewrite_gpu_calls.sh small-c       # 135M: the stage (chosen), datatrove's runner (same settings),
#                                                      #       raw with vLLM's defaults again on the warm machine
#   bash benchmarks/rewrite_gpu_calls.sh large         # Llama-3.1-8B shapes: raw defaults, raw chosen
#   bash benchmarks/rewrite_gpu_calls.sh large-stage   # 8B: the stage, 16 shards, chosen settings
#   bash benchmarks/rewrite_gpu_calls.sh small-d       # 135M, the current rule: raw defaults (first engine), raw
#                                                      #       chosen, the stage chosen
#   bash benchmarks/rewrite_gpu_calls.sh small-e       # datatrove's runner chosen, raw defaults warm; then float32:
#                                                      #       chosen, chosen + ngram, 512/32768, identical outputs
#                                                      #       counted against the first (bf16 greedy is not
#                                                      #       reproducible across batches on a GPU)
#
# The sweep behind the rule (fifth session), one raw run per settings JSON, then a table against the first file:
#   bash benchmarks/rewrite_gpu_calls.sh small-run NAME 'JSON' [ARGS]     # 135M, real files, as above
#   bash benchmarks/rewrite_gpu_calls.sh large-run NAME 'JSON' IN OUT     # 8B shapes, IN/OUT tokens per request
#   bash benchmarks/rewrite_gpu_calls.sh table NAME NAME ...              # compare; every result packed to $OUT
#   bash benchmarks/rewrite_gpu_calls.sh one NAME MODE SETTINGS [ARGS]    # 135M, real files, raw|stage|datatrove
#                                                      #       (sixth call on: stage and datatrove alternated)
#
# The eleventh session's calls (docs/benchmarks.md, "Batch-invariant kernels, speculation counted"), one after the
# other on a warm machine after `model`, each ARGS of `one` (ARGS: --dtype float32, --speculation ngram,
# --batch-invariant):
#   fp32_a raw chosen --dtype float32 | fp32_b (the same) | fp32_ngram raw chosen --speculation ngram --dtype float32
#   bi_a raw chosen --batch-invariant | bi_ngram raw chosen --speculation ngram --batch-invariant | bi_b (= bi_a)
#   bf_chosen raw chosen | bf_ngram raw chosen --speculation ngram
#   bi_256 raw '{"max_num_seqs": 256, "max_num_batched_tokens": 16384, "compilation_config":
#               {"max_cudagraph_capture_size": 256}}' --batch-invariant
#   bi_stage stage chosen --batch-invariant | bf_stage stage chosen | bf_datatrove datatrove chosen
#
# The twelfth session's (docs/benchmarks.md, "Suffix speculation, and the stage beside datatrove alternated"):
#   bash benchmarks/rewrite_gpu_calls.sh suffix-build  # arctic-inference (vLLM's suffix proposer) built on the
#                                                      #       device from the carried sdist (/root/stash/ai)
#   then `one`: bf_chosen raw chosen | bf_suffix raw chosen --speculation suffix | st1 stage chosen |
#   dt1 datatrove chosen | st2 | dt2 | st3 | dt3 (alternated) | st_suffix stage chosen --speculation suffix
#   then `table` with the reference first (e.g. table bi_a bi_b bi_ngram bi_256 bi_stage)
#
# The thirteenth session's (docs/benchmarks.md, "Llama-3.1-8B shapes beside datatrove's runner"), after `install`:
#   bash benchmarks/rewrite_gpu_calls.sh large-one NAME MODE SETTINGS [ARGS]   # 8B shapes, 1000 x 1024/1024,
#                                                      #       raw|stage|datatrove, packed at once
#   in the order st1 stage chosen (the machine's first engine) | dt1 datatrove chosen | raw_def raw defaults |
#   dt2 datatrove chosen | st2 stage chosen | raw_ch raw chosen (then table raw_def raw_ch st1 dt1 dt2 st2)
# The fourteenth session's, after `install` (two runs fitted): st16 stage chosen --shards 16 (the machine's first
#   engine) | raw_ch raw chosen, then `bench_rewrite_gpu.py --mode compare --json raw_ch.json st16.json`
# The fifteenth session's, after `install`: warm raw chosen --num-prompts 200 (the machine's first engine, a warm-up)
#   | st16_a stage chosen --shards 16 | raw_b raw chosen | st16_c (as st16_a) | raw_d (as raw_b), two a call, then
#   compare raw_b st16_a st16_c raw_d (the stage's JSON also holds generating_window_s and each shard's times)
#
# Env: DATA (the Python corpus Parquet), TOKENIZER (Llama 3 tokenizer folder), RES (where results gather).
set -u
cd "$(dirname "$0")/.."
RES=${RES:-/root/bench-results}
mkdir -p "$RES"
MODEL=/root/smollm2-135m-instruct
SMALL="python3 benchmarks/bench_rewrite_gpu.py --model $MODEL --docs corpus:${DATA:-.dev/bench/python_corpus.parquet}
       --num-prompts 1000 --output-len 1024 --max-model-len 8192"
LARGE="python3 benchmarks/bench_rewrite_gpu.py --tokenizer ${TOKENIZER:-.dev/bench/llama3}
       --num-prompts 1000 --input-len 1024 --output-len 1024 --max-model-len 4096"
BATCH='{"max_num_seqs": 512, "max_num_batched_tokens": 32768}'

run() {  # name, then the command; its log and JSON land in $RES
  local name=$1; shift
  echo "== $name $(date +%T)"
  PYTHONUNBUFFERED=1 timeout "${T:-270}" "$@" --json "$RES/$name.json" > "$RES/$name.log" 2>&1
  echo "   rc=$? $(grep -h '^RESULT' "$RES/$name.log" | cut -c1-400)"
  grep -h -E "Error|error:" "$RES/$name.log" | grep -v -i "warn" | tail -3
}

pack() { tar czf "$OUT/$1.tgz" -C "$RES" . ; }

vllm_cli() {  # datatrove's runner starts `vllm serve`: the payload has no console scripts, so one in /root/bin
  command -v vllm >/dev/null || { mkdir -p /root/bin; printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' > /root/bin/vllm; chmod +x /root/bin/vllm; }
}

case "${1:-}" in
model)
  cat /root/stash/gguf/part-* > /root/smollm2.gguf
  echo "sha256 $(sha256sum /root/smollm2.gguf | cut -c1-64) want $(cat /root/stash/gguf/sha)"
  python3 -c "
import sys; sys.path.insert(0, '.')
from pathlib import Path
from stages.rewrite.model_import import import_gguf
import_gguf(Path('/root/smollm2.gguf'), Path('$MODEL'), log=print)" 2>&1 | grep -v Warning | tail -3
  ;;
small-a)
  run small_raw_defaults $SMALL --mode raw --settings defaults
  pack small-a
  ;;
small-b)
  run small_raw_batch $SMALL --mode raw --settings "$BATCH"
  run small_raw_ngram $SMALL --mode raw --settings chosen --speculation ngram
  python3 benchmarks/bench_rewrite_gpu.py --mode compare --json "$RES"/small_raw_defaults.json \
    "$RES"/small_raw_batch.json "$RES"/small_raw_ngram.json
  pack small-b
  ;;
small-c)
  run small_stage $SMALL --mode stage --settings chosen
  vllm_cli
  PATH=/root/bin:$PATH run small_datatrove_chosen $SMALL --mode datatrove --settings chosen
  run small_raw_defaults_warm $SMALL --mode raw --settings defaults
  python3 benchmarks/bench_rewrite_gpu.py --mode compare --json "$RES"/small_raw_defaults_warm.json \
    "$RES"/small_raw_defaults.json "$RES"/small_raw_batch.json "$RES"/small_raw_ngram.json "$RES"/small_stage.json \
    "$RES"/small_datatrove_chosen.json
  pack small-c
  ;;
large)
  run large_raw_defaults $LARGE --mode raw --settings defaults
  run large_raw_chosen $LARGE --mode raw --settings chosen
  python3 benchmarks/bench_rewrite_gpu.py --mode compare --json "$RES"/large_raw_defaults.json "$RES"/large_raw_chosen.json
  pack large
  ;;
large-stage)
  run large_stage16 $LARGE --mode stage --settings chosen --shards 16
  python3 benchmarks/bench_rewrite_gpu.py --mode compare --json "$RES"/large_raw_defaults.json \
    "$RES"/large_raw_chosen.json "$RES"/large_stage16.json
  pack large-stage
  ;;
small-d)
  run small_raw_defaults $SMALL --mode raw --settings defaults
  run small_raw_chosen $SMALL --mode raw --settings chosen
  run small_stage_chosen $SMALL --mode stage --settings chosen
  python3 benchmarks/bench_rewrite_gpu.py --mode compare --json "$RES"/small_raw_defaults.json \
    "$RES"/small_raw_chosen.json "$RES"/small_stage_chosen.json
  pack small-d
  ;;
small-e)
  vllm_cli
  PATH=/root/bin:$PATH run small_datatrove_chosen $SMALL --mode datatrove --settings chosen
  run small_raw_defaults_warm $SMALL --mode raw --settings defaults
  python3 benchmarks/bench_rewrite_gpu.py --mode compare --json "$RES"/small_raw_defaults_warm.json \
    "$RES"/small_raw_defaults.json "$RES"/small_raw_chosen.json "$RES"/small_stage_chosen.json \
    "$RES"/small_datatrove_chosen.json
  run small_fp32_chosen $SMALL --mode raw --settings chosen --dtype float32
  run small_fp32_ngram $SMALL --mode raw --settings chosen --speculation ngram --dtype float32
  run small_fp32_batch512 $SMALL --mode raw --settings "$BATCH" --dtype float32
  python3 benchmarks/bench_rewrite_gpu.py --mode compare --json "$RES"/small_fp32_chosen.json \
    "$RES"/small_fp32_ngram.json "$RES"/small_fp32_batch512.json
  pack small-e
  ;;
suffix-build)  # only arctic-inference's C++ suffix tree compiles (no CUDA ops without ARCTIC_INFERENCE_PRECOMPILED_OPS)
  for t in g++ cmake ninja; do printf '%s: %s\n' "$t" "$(command -v $t || echo MISSING)"; done
  mkdir -p /root/nb && python3 -m pip install -q --no-deps --target /root/nb /root/stash/ai/nanobind-*.whl
  PYTHONPATH=/root/nb python3 -m pip install --no-deps --no-build-isolation \
    /root/stash/ai/arctic_inference-*.tar.gz > "$RES/suffix-build.log" 2>&1
  echo "build rc=$?"; tail -4 "$RES/suffix-build.log"
  python3 -c "import arctic_inference.suffix_decoding as s; print('suffix decoding:', s.__file__)"
  ;;
one)  # one run of the 135M on the real files, any mode; its results packed at once (a later run may not fit)
  shift; name=$1; mode=$2; settings=$3; shift 3
  vllm_cli
  PATH=/root/bin:$PATH run "$name" $SMALL --mode "$mode" --settings "$settings" "$@"
  pack results
  ;;
large-one)  # one run of the 8B shapes, any mode; packed at once
  shift; name=$1; mode=$2; settings=$3; shift 3
  vllm_cli
  PATH=/root/bin:$PATH run "$name" $LARGE --mode "$mode" --settings "$settings" "$@"
  pack results
  ;;
small-run)
  shift; name=$1; settings=$2; shift 2
  run "$name" $SMALL --mode raw --settings "$settings" "$@"
  ;;
large-run)
  run "$2" python3 benchmarks/bench_rewrite_gpu.py --tokenizer "${TOKENIZER:-.dev/bench/llama3}" --num-prompts 1000 \
    --input-len "$4" --output-len "$5" --max-model-len 4096 --mode raw --settings "$3"
  ;;
table)
  shift
  python3 benchmarks/bench_rewrite_gpu.py --mode compare --json $(for n in "$@"; do echo "$RES/$n.json"; done)
  tar czf "$OUT/results.tgz" -C "$RES" .
  ;;
*) echo "usage: $0 model|small-a|small-b|small-c|small-d|small-e|large|large-stage|suffix-build|one|large-one|small-run|large-run|table" >&2; exit 2 ;;
esac
