#!/usr/bin/env bash
# run_parity.sh - tokenizer.hf_parity: installs the JS reference (@huggingface/tokenizers, pinned) under the
# build folder, has it encode the parity texts, then test_parity compares tokenizer_encode against its ids.
# usage: run_parity.sh WORK_DIR SHARED_DIR TEST_PARITY_EXE   (exit 77 = skipped: no shared data / no npm)
set -u
work=$1 shared=$2 exe=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/js_setup.sh"
js_require "$shared"
js_install "$work" "@huggingface/tokenizers@0.2.0"
rm -rf "$work/ids"
# two node processes (2 cores): mistral's one-word-per-segment BPE is the slow one
node "$here/ref_encode.mjs" "$work" "$shared" "$work/ids" mistral & pid=$!
node "$here/ref_encode.mjs" "$work" "$shared" "$work/ids" gpt2 llama3 qwen3 || { echo "the JS reference failed"; exit 1; }
wait $pid || { echo "the JS reference failed (mistral)"; exit 1; }
exec "$exe" "$shared" "$work/ids" gpt2 llama3 qwen3 mistral
