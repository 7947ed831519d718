#!/usr/bin/env bash
# tests/gpu/device_check.sh - the GPU verification of the scoring engine and of DPO training, in one call on a lent H200.
#
#   tests/gpu/device_check.sh pack [BUILD]   here: builds BUILD (default build-device: -DQUORUM_CUDA=ON, no BLAS so
#                                            the CPU twins run their portable loops and OpenBLAS's 35 MB stay home;
#                                            no NCCL: its 218 MB would not fit the carry, and one GPU has no use for it)
#                                            and packs the GPU binaries with their libraries, minus cuBLAS, into
#                                            .device/check (~48 MB with 96 HH pairs for step 6)
#   tests/gpu/device_check.sh run [WHAT]     there (repository root, $OUT set): the checks below, results in $OUT;
#                                            WHAT = all (default) | score (steps 1-5) | dpo (step 6)
#
# The device image has nvcc, torch and transformers but no MPI, HDF5 or cJSON: the binaries travel with the
# libraries they link (slurm/pack's way: Open MPI's plugins included, one wrapper per binary) and use the
# device's own cuBLAS (CUDA 13, like the build here): ~20 MB to carry instead of ~650 MB. Device call:
#   run(command="tests/gpu/device_check.sh run", carry=[".device/check"], timeout_s=540)
# What `run` does (about 6 minutes), each step's log in $OUT (summary.txt lists pass/fail per step):
#   1 nvidia-smi; fixtures: tests/model/ref_model.py make (torch reference, float64)
#   2 gpu.parity: every op vs the CPU twin (bf16 GEMM, flash attention, ...) and model/training parity
#   3 model parity on backend_cuda vs torch for every fixture; packed + shared == plain on the reward ones
#   4 compute-sanitizer memcheck of the op parity (reported as unsupported on gVisor machines)
#   5 tests/gpu/device_bench.py: quorum (padded / packed+shared) vs HF transformers (bf16, sdpa) on random-init
#     GPT-2-small, ~1B and 8B-shaped (4 layers) Llama RMs written there: rewards vs transformers fp32,
#     tokens/s, pairs/s, MFU, at T = 512, 2048, 4096
#   6 tests/gpu/device_dpo.py (issue 19): 10 DPO steps on CUDA (fp32 full / --packed / --recompute / LoRA, and
#     --precision bf16) track the CPU fp32 run; DPO tokens/s + MFU of a ~1B Llama policy in bf16, full, --packed and
#     LoRA, vs a transformers reference on the same batches (~4 minutes; `run dpo` alone fits one call with time to spare). The pack carries a small HH
#     corpus ingested here and the GPT-2 tokenizer (from ../shared) in .device/check/dpo_data.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pack_dir="$here/.device/check"
BINS="tests/gpu/test_gpu_parity tests/gpu/test_model_cuda tests/gpu/bench_model_score_cuda"

do_pack() {
  local build=${1:-build-device}
  cmake -S "$here" -B "$here/$build" -DCMAKE_BUILD_TYPE=Release -DQUORUM_CUDA=ON -DCMAKE_DISABLE_FIND_PACKAGE_BLAS=ON \
    -DQUORUM_NCCL=OFF >/dev/null || return 1
  cmake --build "$here/$build" -j2 --target test_gpu_parity test_model_cuda bench_model_score_cuda quorum || return 1
  rm -rf "$pack_dir"
  "$here/slurm/pack" -o "$pack_dir" "$here/$build/quorum" || return 1 # the quorum binary + wrapper + libraries
  for b in $BINS; do # the test binaries: the same wrapper, their libraries added
    local name=${b##*/}
    cp -L "$here/$build/$b" "$pack_dir/libexec/$name"
    sed "s#libexec/quorum#libexec/$name#" "$pack_dir/quorum" > "$pack_dir/$name" && chmod +x "$pack_dir/$name"
    ldd "$here/$build/$b" | awk '/=> \// {print $3}' | while read -r lib; do
      case ${lib##*/} in libcublas*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libcuda.so*|ld-linux*) ;;
        *) [ -e "$pack_dir/lib/${lib##*/}" ] || cp -L "$lib" "$pack_dir/lib/" ;; esac
    done
  done
  rm -f "$pack_dir"/lib/libcublas*  # the device has its own cuBLAS 13
  if ls "$pack_dir"/lib/libnccl* >/dev/null 2>&1; then echo "pack: $build links NCCL (218 MB): reconfigure it with -DQUORUM_NCCL=OFF"; return 1; fi
  pack_dpo_data "$here/$build/quorum" || return 1
  echo "packed into $pack_dir ($(du -sh "$pack_dir" | cut -f1)): carry .device/check"
}

# DPO inputs for step 6 (the device has no ../shared): 96 HH pairs ingested here, the GPT-2 tokenizer folder.
pack_dpo_data() {
  local shared="$here/../shared" d="$pack_dir/dpo_data"
  local hh="$shared/data/hh-rlhf/harmless-base-test.jsonl.gz" tok="$shared/tokenizers/gpt2"
  [ -f "$hh" ] && [ -f "$tok/tokenizer.json" ] || { echo "no $hh or $tok: step 6 (dpo) will be skipped"; return 0; }
  mkdir -p "$d" && cp -r "$tok" "$d/tokenizer" &&
    "$1" ingest --out "$d" --name hh --format hh --max-pairs 96 "$hh" > /dev/null
}

# The device's cuBLAS 13: the CUDA toolkit's, else the one torch's wheels bring.
find_cublas() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, s, "lib") for p in nvidia.__path__ for s in ("cublas", "cu13")))' 2>/dev/null); do
    ls "$d"/libcublasLt.so.13* >/dev/null 2>&1 && { echo "$d"; return; }
  done
}

step() { # step NAME TIMEOUT_S CMD...: runs CMD into $OUT/NAME.log and records pass/fail
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: $([ $rc -eq 0 ] && echo PASS || echo "FAIL (exit $rc)") in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}

do_run() { # do_run WHAT
  local what=${1:-all}
  case $what in all|score|dpo) ;; *) echo "run: WHAT must be all, score or dpo (got '$what')"; exit 2 ;; esac
  : "${OUT:?set OUT to the folder the results go to}"
  [ -x "$pack_dir/test_gpu_parity" ] || { echo "no pack at $pack_dir: run '$0 pack' here and carry .device/check"; exit 1; }
  local cublas
  cublas=$(find_cublas)
  [ -n "$cublas" ] || { echo "no libcublasLt.so.13 on this machine" | tee "$OUT/summary.txt"; exit 1; }
  export LD_LIBRARY_PATH="$cublas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  local work
  work=$(mktemp -d)
  : > "$OUT/summary.txt"
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  [ "$what" = dpo ] || run_score "$work"
  if [ "$what" != score ]; then
    if [ -d "$pack_dir/dpo_data/corpora/hh" ]; then
      step dpo 420 python3 "$here/tests/gpu/device_dpo.py" "$pack_dir/quorum" "$pack_dir/dpo_data" "$work/dpo" \
        "$OUT/dpo.json"
    else
      echo "dpo: SKIPPED (no dpo_data in the pack)" | tee -a "$OUT/summary.txt"
    fi
  fi
  cat "$OUT/summary.txt"
  rm -rf "$work"
}

run_score() { # steps 1-5 into $OUT, scratch in $1
  local work=$1 fx=$1/fixtures
  export QUORUM_MODEL_BACKEND=cuda
  step fixtures 120 python3 "$here/tests/model/ref_model.py" make "$fx"
  step parity_ops 120 "$pack_dir/test_gpu_parity"
  step model_parity 150 bash -c '
    fail=0
    for d in "$1"/*/; do
      c=$(basename "$d"); [ -f "$d/ref.safetensors" ] || continue
      "$2/test_model_cuda" parity "$d" "$3/saved/$c" > "$3/p.log" 2>&1 || { fail=1; echo "FAIL parity $c"; tail -20 "$3/p.log"; }
      case $c in *_rm) for mode in "" inference; do
        "$2/test_model_cuda" packed "$d" $mode > "$3/p.log" 2>&1 || { fail=1; echo "FAIL packed $c $mode"; tail -20 "$3/p.log"; }
      done ;; esac
      echo "done $c"
    done
    exit $fail' sh "$fx" "$pack_dir" "$work"
  step memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 9 "$pack_dir/test_gpu_parity"
  step bench 240 python3 "$here/tests/gpu/device_bench.py" "$pack_dir/bench_model_score_cuda" "$work/bench" "$OUT/bench.json"
  unset QUORUM_MODEL_BACKEND
}

case ${1:-} in
  pack) do_pack "${2:-}" ;;
  run) do_run "${2:-}" ;;
  *) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
