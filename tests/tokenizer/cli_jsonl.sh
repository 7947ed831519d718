#!/usr/bin/env bash
# tokenizer.cli_jsonl: `quorum tokenize --jsonl` (one JSON string per line, one line of ids each) gives, line by
# line, what one `quorum tokenize` per text gives (whose ids tokenizer.hf_parity checks against HF tokenizers);
# a line that is not a JSON string fails with one line naming its number. usage: cli_jsonl.sh QUORUM SHARED
set -uo pipefail
q=$1 tok=$2/tokenizers/gpt2
[ -f "$tok/tokenizer.json" ] || { echo "skip: $tok absent"; exit 77; }
texts=('Hello world' $'two\nlines and  spaces' $'caf\u00e9 \u2014 \u4f60\u597d <|endoftext|>' '' '"quoted" \\ back')
fail=0
want=$(for t in "${texts[@]}"; do "$q" tokenize --tokenizer "$tok" --text "$t" || echo ERR; done)
got=$(for t in "${texts[@]}"; do python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$t"; done |
      "$q" tokenize --tokenizer "$tok" --jsonl) || { echo "FAIL: --jsonl exited $?"; fail=1; }
[ "$got" = "$want" ] || { echo "FAIL: --jsonl ids differ"; diff <(echo "$want") <(echo "$got"); fail=1; }
[ "$(echo "$got" | wc -l)" -eq ${#texts[@]} ] || { echo "FAIL: not one line per text"; fail=1; }
err=$(printf '"a"\n5\n' | "$q" tokenize --tokenizer "$tok" --jsonl 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] && [[ $err == *"line 2"*"not a JSON string"* ]] ||
  { echo "FAIL: bad line: rc=$rc, '$err'"; fail=1; }
[ $fail -eq 0 ] && echo "ok: --jsonl == one run per text (${#texts[@]} texts); a bad line is refused in one line"
exit $fail
