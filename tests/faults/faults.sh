#!/usr/bin/env bash
# faults.<case> - the pipeline under abuse. Each case asserts: the right result, or a failure exit
# (1..125, not a signal, not a timeout) with a "quorum: error:" line naming the file (and record /
# field where there is one); never a partial output presented as complete (`quorum verify` must fail
# until a re-run has healed it), never a silently shorter corpus. The reference for "the right result"
# is a clean run of the same job into another folder (tests/run/lib.sh same_outputs: h5diff + JSON).
# usage: faults.sh CASE QUORUM SHARED_DIR MPIEXEC NP_FLAG KILLSHIM
#   CASE: verify | hdf5 | manifest | dup_ids | empty | diskfull | kill_ingest | kill_score | kill_vote |
#         kill_clean | rerun | trust_* (trust_cases.sh)
set -uo pipefail
CASE=$1 QUORUM=$2 SHARED=$3 MPIEXEC=$4 NPFLAG=$5 KILLSHIM=${6:-}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${QUORUM_PYTHON:-/usr/bin/python3} # numpy + h5py
source "$HERE/../run/lib.sh"
SRC="$SHARED/data/hh-rlhf/harmless-base-test.jsonl.gz"
[ -f "$SRC" ] || { echo "SKIP: no HH data under $SHARED"; exit 77; }
command -v h5diff >/dev/null || { echo "SKIP: h5diff (hdf5-tools) is not installed"; exit 77; }

T=$(mktemp -d /tmp/quorum-faults.XXXXXX)
MOUNTS=()
cleanup() {
  for m in "${MOUNTS[@]+"${MOUNTS[@]}"}"; do umount "$m" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
cd "$T"

q() { timeout 120 "$QUORUM" "$@"; }
mpi2() { timeout 120 "$MPIEXEC" "$NPFLAG" 2 --oversubscribe "$QUORUM" "$@"; }

# expect_clean_failure LOG RC NEEDLE WHAT: a failure exit that is not a signal or a timeout, and an error
# line holding NEEDLE (the file, record or field it must name).
expect_clean_failure() {
  local log=$1 rc=$2 needle=$3 what=$4
  [ "$rc" -ne 0 ] || { cat "$log"; fail "$what: exit 0, expected a failure"; }
  [ "$rc" -ne 124 ] || { cat "$log"; fail "$what: timed out (hang)"; }
  [ "$rc" -lt 126 ] || { cat "$log"; fail "$what: exit $rc (killed by a signal?)"; }
  grep -Eq 'Segmentation|Aborted|core dumped|AddressSanitizer|runtime error' "$log" && { cat "$log"; fail "$what: crashed"; }
  grep -F 'quorum: error:' "$log" | grep -qF -- "$needle" || { cat "$log"; fail "$what: no error line naming \"$needle\""; }
}

# verify_fails DIR JOB NEEDLE: `quorum verify` reports a FAIL line holding NEEDLE (partial output is
# never presented as complete).
verify_fails() {
  local job=$1 needle=$2
  q verify --job "$job" >vlog 2>&1 && { cat vlog; fail "verify passed on a damaged/partial output ($needle)"; }
  grep '^FAIL: ' vlog | grep -qF -- "$needle" || { cat vlog; fail "verify has no FAIL line naming \"$needle\""; }
}
verify_ok() {
  q verify --job "$1" >vlog 2>&1 || { cat vlog; fail "verify failed on $1"; }
}

# The job of most cases: the first 300 lines of HH harmless-base (from a private copy of the source, so
# a case may edit it), shard_size 100, three builtin members, SAC (tests/run/lib.sh write_job).
job_at() { # FILE OUT_DIR
  write_job "$1" "$2" harmless=harmless-base:300
  sed -i "s#$SHARED/data/hh-rlhf/harmless-base-test.jsonl.gz#$T/harmless.jsonl.gz#" "$1"
}
# The reference: a clean run of that job (the right result every case compares against).
reference() {
  cp "$SRC" "$T/harmless.jsonl.gz"
  job_at ref.json "$T/ref"
  q run ref.json >ref.log 2>&1 || { cat ref.log; fail "reference run failed"; }
}
# A copy of the reference output under NAME (with NAME.json pointing at it).
copy_ref() { rm -rf "$T/$1"; cp -a "$T/ref" "$T/$1"; sed "s#$T/ref#$T/$1#" ref.json >"$1.json"; }

# Replaces bytes of FILE at OFFSET with the bytes of STRING (same length: nothing else moves).
poke() { printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
# Offset of the first occurrence of a byte string in a file.
offset_of() { grep -obaF -- "$2" "$1" | head -1 | cut -d: -f1; }

case_verify() {
  reference
  verify_ok ref.json
  grep -q '^verify: [0-9]* checks, 0 failed' vlog || fail "no summary line"
  pass "a good pipeline output verifies ($(sed -n 's/^verify: \([0-9]*\) checks.*/\1/p' vlog) checks)"
  # each tampering on a fresh copy of the good output
  fresh() { copy_ref v; }

  fresh
  f=v/corpora/harmless/shard-00001.h5
  off=$(offset_of "$f" "Human")
  [ -n "$off" ] || fail "no text bytes found in $f"
  poke "$f" "$off" "Humax"
  verify_fails v.json "shard-00001.h5: checksum"
  q verify --job ref.json --out-dir "$T/v" >vlog2 2>&1 && fail "verify --out-dir passed on a tampered copy"
  grep -q "^FAIL: $T/v/corpora/harmless/shard-00001.h5: checksum" vlog2 || { cat vlog2; fail "verify --out-dir checked the wrong folder"; }
  pass "an edited shard byte is detected (shard checksum), also through --out-dir"

  fresh
  rm v/scores/harmless/hash/shard-00002.h5
  verify_fails v.json "scores/harmless/hash/shard-00002.h5: score file present"
  pass "a deleted score file is detected"

  fresh
  "$PY" - v/cleaned/harmless/ledger.json <<'PY' || fail "ledger edit"
import json, sys
p = sys.argv[1]; j = json.load(open(p))
j["totals"]["kept"] += 1; j["buckets"]["AllAgree"]["kept"] += 1
json.dump(j, open(p, "w"), indent=1)
PY
  verify_fails v.json "ledger.json: balanced"
  pass "an edited ledger (kept + 1) is detected (no longer balanced)"

  fresh
  "$PY" - v/cleaned/harmless/ledger.json <<'PY' || fail "ledger edit"
import json, sys
p = sys.argv[1]; j = json.load(open(p))
j["totals"]["kept"] += 1
json.dump(j, open(p, "w"), indent=1)
PY
  verify_fails v.json "ledger.json: ledger readable: bucket rows do not add up"
  pass "an edited ledger total that disagrees with its bucket rows is detected"

  fresh
  src=$T/harmless.jsonl.gz
  gzip -dc "$src" | sed '17s/Human/Humax/' | gzip >x.gz && mv x.gz "$src"
  verify_fails v.json "$src: source checksum"
  pass "a changed source file is detected (source checksum)"

  fresh
  head -c -1 v/cleaned/harmless/cleaned.jsonl >x && mv x v/cleaned/harmless/cleaned.jsonl
  sed -i '$d' v/cleaned/harmless/cleaned.jsonl
  verify_fails v.json "cleaned.jsonl"
  pass "a cleaned.jsonl missing its last line is detected"

  fresh
  rm v/votes/harmless.h5
  verify_fails v.json "votes/harmless.h5: votes file readable"
  pass "a missing votes file is detected"
}

# Corrupted and truncated HDF5 shards and score files: one line naming the file, no crash.
case_hdf5() {
  reference
  copy_ref a
  f=a/corpora/harmless/shard-00001.h5
  cp "$f" shard.bak
  head -c 2000 shard.bak >"$f"
  rm -rf a/scores/harmless
  q score --job a.json >log1b 2>&1; expect_clean_failure log1b $? "shard-00001.h5" "score over a truncated shard"
  [ ! -e a/scores/harmless/len/shard-00001.h5 ] || fail "a score file was written for a truncated shard"
  q export --corpus-dir a/corpora/harmless --out x.jsonl >log2 2>&1; expect_clean_failure log2 $? "shard-00001.h5" "export of a truncated shard"
  [ ! -e x.jsonl ] || fail "export left x.jsonl behind for a truncated shard"
  pass "truncated shard: score and export fail with one line naming it, nothing written"

  cp shard.bak "$f"
  head -c 512 /dev/urandom | dd of="$f" bs=1 seek=0 conv=notrunc status=none
  q clean --job a.json >log3 2>&1; expect_clean_failure log3 $? "shard-00001.h5" "clean over a corrupted shard"
  [ ! -e a/cleaned/harmless/ledger.json ] || fail "clean left a ledger (complete-looking) after failing"
  verify_fails a.json "shard-00001.h5"
  pass "corrupted shard header: clean fails naming it; no ledger; verify fails"

  cp shard.bak "$f"
  cp -a ref/scores a/ 2>/dev/null; rm -rf a/scores; cp -a ref/scores a/scores
  s=a/scores/harmless/len/shard-00000.h5
  head -c 1500 ref/scores/harmless/len/shard-00000.h5 >"$s"
  q vote --job a.json >log4 2>&1; expect_clean_failure log4 $? "len/shard-00000.h5" "vote over a truncated score file"
  mpi2 run a.json >log5 2>&1 || { cat log5; fail "run did not heal a truncated score file"; }
  same_outputs a ref harmless || fail "outputs after healing a truncated score file differ"
  verify_ok a.json
  pass "truncated score file: vote fails naming it; quorum run rescores it and matches the reference"
}

# Manifests that disagree with the shards.
case_manifest() {
  reference
  copy_ref a
  m=a/corpora/harmless/manifest.json
  cp "$m" man.bak
  # pair counts moved between shards (totals still add up)
  "$PY" - "$m" <<'PY'
import json, sys
p = sys.argv[1]; j = json.load(open(p))
j["shards"][0]["pairs"] -= 1; j["shards"][1]["pairs"] += 1
json.dump(j, open(p, "w"), indent=1)
PY
  q clean --job a.json >log1 2>&1; expect_clean_failure log1 $? "shard-00000.h5" "clean with manifest pair counts moved"
  verify_fails a.json "shard-00000.h5: 99 pairs, manifest says 98"
  pass "manifest pair counts that disagree with a shard: clean fails naming the shard; verify too"

  cp man.bak "$m"
  "$PY" - "$m" <<'PY'
import json, sys
p = sys.argv[1]; j = json.load(open(p))
j["n_pairs"] += 5
json.dump(j, open(p, "w"), indent=1)
PY
  q vote --job a.json >log2 2>&1; expect_clean_failure log2 $? "manifest.json" "vote with n_pairs != sum of shard pairs"
  pass "manifest whose counts do not add up: one line naming manifest.json"

  cp man.bak "$m"
  "$PY" - "$m" <<'PY'
import json, sys
p = sys.argv[1]; j = json.load(open(p))
c = j["shards"][0]["checksum"]
j["shards"][0]["checksum"] = ("f" if c[0] != "f" else "e") + c[1:]
json.dump(j, open(p, "w"), indent=1)
PY
  verify_fails a.json "shard-00000.h5: checksum"
  q score --job a.json >log3 2>&1; expect_clean_failure log3 $? "shard-00000.h5" "score over a manifest with an edited checksum"
  mpi2 run a.json >log3c 2>&1 || { cat log3c; fail "run over the edited manifest failed"; }
  grep -Eq '\] ingest +done' log3c || { cat log3c; fail "run must re-ingest: the manifest changed since its stage record"; }
  same_outputs a ref harmless || fail "outputs after the re-ingest differ from the reference"
  verify_ok a.json
  pass "manifest shard checksum edited: verify and score fail naming the shard; run re-ingests (record) and heals it"

  echo '{"name": "harmless", "n_lines": 3' >"$m"
  q score --job a.json >log4 2>&1; expect_clean_failure log4 $? "manifest.json" "score with a truncated manifest"
  pass "truncated manifest.json: one line naming it"
}

# Duplicate pair ids in a shard (written consistently, manifest checksum updated): every reader refuses.
case_dup_ids() {
  reference
  copy_ref a
  "$PY" - a/corpora/harmless <<'PY' || fail "could not write the duplicate-id shard"
import h5py, json, numpy as np, sys
d = sys.argv[1]
with h5py.File(d + "/shard-00000.h5", "r+") as f:
    ids = f["pair_id"][...]
    ids[5] = ids[4]
    f["pair_id"][...] = ids
    h = 0xcbf29ce484222325
    order = ["pair_id", "prompt_off", "prompt", "chosen_off", "chosen", "rejected_off", "rejected",
             "turn_off", "turn_role", "text_off", "text"]
    data = b"".join(f[k][...].astype(f[k].dtype.newbyteorder("<")).tobytes() for k in order)
for b in data:
    h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
m = json.load(open(d + "/manifest.json"))
m["shards"][0]["checksum"] = "%016x" % h
json.dump(m, open(d + "/manifest.json", "w"), indent=1)
PY
  rm -rf a/scores/harmless
  q score --job a.json >log1 2>&1; expect_clean_failure log1 $? "shard-00000.h5" "score over duplicate ids"
  grep -F 'quorum: error:' log1 | grep -q "shard-00000.h5:5:pair_id: id" || { cat log1; fail "the error does not name record 5, pair_id"; }
  q clean --job a.json >log2 2>&1; expect_clean_failure log2 $? "pair_id" "clean over duplicate ids"
  verify_fails a.json "shard-00000.h5: shard readable"
  pass "duplicate pair ids in a shard (checksum consistent): score, clean and verify refuse, naming pair_id"
}

# Empty corpus and a one-pair corpus through quorum run with builtin members.
case_empty() {
  : >empty.jsonl
  gzip -dc "$SRC" | head -1 >one.jsonl
  for c in empty one; do
    "$PY" - "$c" <<'PY'
import json, sys
c = sys.argv[1]
json.dump({"name": c, "out_dir": c, "shard_size": 100, "corpora": [{"name": c, "path": c + ".jsonl", "format": "hh"}],
           "committee": [{"name": "len", "path": "builtin:len"}, {"name": "hash", "path": "builtin:hash:1"}]},
          open(c + ".json", "w"))
PY
    mpi2 run "$c.json" >"$c.log" 2>&1 || { cat "$c.log"; fail "quorum run on the $c corpus exited $?"; }
    verify_ok "$c.json"
  done
  "$PY" - <<'PY' || fail "empty / one-pair outputs wrong"
import json
for c, lines, pairs in (("empty", 0, 0), ("one", 1, 1)):
    m = json.load(open(f"{c}/corpora/{c}/manifest.json"))
    l = json.load(open(f"{c}/cleaned/{c}/ledger.json"))
    assert (m["n_lines"], m["n_pairs"], m["n_rejected"], m["n_shards"]) == (lines, pairs, 0, lines), m
    t = l["totals"]
    assert l["lines"] == lines and t["kept"] + t["flipped"] + t["removed"] + t["rejected"] == lines and l["balanced"], l
    n = sum(1 for _ in open(f"{c}/cleaned/{c}/cleaned.jsonl"))
    assert n == t["kept"] + t["flipped"], (n, t)
one = [json.loads(x) for x in open("one/cleaned/one/cleaned.jsonl")]
src = json.loads(open("one.jsonl").readline())
for r in one:  # cleaned.jsonl keeps the input's HH layout
    got = (r["chosen"], r["rejected"])
    want = (src["chosen"], src["rejected"]) if r["quorum"]["action"] == "keep" else (src["rejected"], src["chosen"])
    assert got == want, "the one pair was not carried through byte for byte"
PY
  pass "empty corpus (0 lines) and one-pair corpus: quorum run (2 ranks) completes, verifies, ledgers balance"
}

# Disk full during each stage's writes: a small tmpfs under the stage's output folder (root), else
# RLIMIT_FSIZE with SIGXFSZ ignored. The stage fails with an error line; no file under its final name is
# half-written (every .h5 under a final name opens and reads; the completion marks are absent).
mount_small() { # DIR KB
  mkdir -p "$1"
  if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size="$2k" tmpfs "$1" 2>/dev/null; then MOUNTS+=("$1"); return 0; fi
  return 1
}
all_h5_complete() {
  "$PY" - "$1" <<'PY'
import glob, h5py, sys
for p in glob.glob(sys.argv[1] + "/**/*.h5", recursive=True):
    try:
        with h5py.File(p, "r") as f:
            for k in f: f[k][...]
    except Exception as e:
        sys.exit("half-written under its final name: %s (%s)" % (p, e))
PY
}
diskfull_stage() { # STAGE OUTPUT_FOLDER KB MARK [SCHEDULE]
  local stage=$1 sub=$2 kb=$3 mark=$4 sched=${5:-dynamic} use_mount=1 rc
  reference
  mkdir -p probe && mount_small "$T/probe" 64 || use_mount=0
  [ "$use_mount" -eq 1 ] && { umount "$T/probe"; MOUNTS=(); }
  mkdir -p "$T/d"
  sed "s#$T/ref#$T/d#" ref.json >d.json
  case $stage in # the stages before `stage` come from the reference
    score) cp -a ref/corpora d/ ;;
    vote) cp -a ref/corpora ref/scores d/ ;;
    clean) cp -a ref/corpora ref/scores ref/votes d/ ;;
  esac
  if [ "$use_mount" -eq 1 ]; then
    mount_small "$T/d/$sub" "$kb" || fail "mount failed"
    QUORUM_SCORE_SCHEDULE=$sched q "$stage" --job d.json >full.log 2>&1; rc=$?
  else
    ( trap '' XFSZ; ulimit -f "$kb"; export QUORUM_SCORE_SCHEDULE=$sched; exec timeout 120 "$QUORUM" "$stage" --job d.json ) >full.log 2>&1; rc=$?
  fi
  expect_clean_failure full.log "$rc" "$sub" "$stage on a full disk"
  [ ! -e "d/$mark" ] || fail "$stage on a full disk left its completion mark $mark"
  all_h5_complete "d/$sub" || fail "$stage on a full disk left a half-written file under its final name"
  verify_fails d.json "$sub"
  if [ "$use_mount" -eq 1 ]; then umount "$T/d/$sub"; MOUNTS=(); fi
  q run d.json >refill.log 2>&1 || { cat refill.log; fail "run after freeing space failed"; }
  same_outputs d ref harmless || fail "outputs after the disk-full re-run differ from the reference"
  pass "disk full in $stage ($([ $use_mount -eq 1 ] && echo "tmpfs of ${kb} kB" || echo RLIMIT_FSIZE)): error line, no half-written file, no completion mark; re-run matches"
}
case_diskfull_ingest() { diskfull_stage ingest corpora 150 corpora/harmless/manifest.json; }
# score: the static schedule (score.h), whose member-major order makes sorry/shard-00002 the last file
# written; a full disk is the same score_unit error in either schedule.
case_diskfull_score() { diskfull_stage score scores 60 scores/harmless/sorry/shard-00002.h5 static; }
case_diskfull_vote() { diskfull_stage vote votes 8 votes/harmless.h5; }
case_diskfull_clean() { diskfull_stage clean cleaned 120 cleaned/harmless/ledger.json; }

# A rank killed (SIGKILL) in each stage: mpirun exits non-zero without hanging, the stage's completion
# mark is absent, verify fails, and a re-run completes with the reference's outputs.
kill_stage() { # STAGE PATTERN MARK [VERIFY_NEEDLE]
  local stage=$1 pat=$2 mark=$3 needle=${4:-}
  [ -f "$KILLSHIM" ] || { echo "SKIP: no kill shim"; exit 77; }
  reference
  job_at k.json "$T/k"
  local before=ingest
  case $stage in score) before=ingest ;; vote) before=score ;; clean) before=vote ;; esac
  if [ "$stage" != ingest ]; then
    mpi2 run k.json --to "$before" >pre.log 2>&1 || { cat pre.log; fail "run --to $before failed"; }
  fi
  QUORUM_FAULT_KILL="$pat" QUORUM_FAULT_RANK=1 LD_PRELOAD="$KILLSHIM" \
    timeout 120 "$MPIEXEC" "$NPFLAG" 2 --oversubscribe -x QUORUM_FAULT_KILL -x QUORUM_FAULT_RANK -x LD_PRELOAD \
    "$QUORUM" run k.json --from "$stage" >kill.log 2>&1
  rc=$?
  [ "$rc" -ne 0 ] || { cat kill.log; fail "mpirun exited 0 although rank 1 was killed in $stage"; }
  [ "$rc" -ne 124 ] || { cat kill.log; fail "mpirun hung after rank 1 was killed in $stage"; }
  grep -q "killshim: rank 1 SIGKILL" kill.log || { cat kill.log; fail "the kill did not happen (pattern $pat)"; }
  [ ! -e "k/$mark" ] || fail "killed $stage left its completion mark $mark"
  verify_fails k.json "${needle:-$(dirname "$mark" | cut -d/ -f1)}"
  mpi2 run k.json >rerun.log 2>&1 || { cat rerun.log; fail "re-run after the kill failed"; }
  same_outputs k ref harmless || fail "re-run after a kill in $stage differs from the reference"
  verify_ok k.json
  pass "rank 1 SIGKILLed in $stage: mpirun exit $rc (no hang), no completion mark, verify fails; re-run matches the reference"
}
case_kill_ingest() { kill_stage ingest "/corpora/harmless/shard-00001" corpora/harmless/manifest.json; }
# score: units are handed out dynamically, so rank 1 dies at the first score file it writes, whichever that
# is; the stage's mark is its record (written by `quorum run` once every score file is there).
case_kill_score() { kill_stage score "/scores/harmless/" records/harmless.score.json scores; }
case_kill_vote() { kill_stage vote "/votes/harmless.h5" votes/harmless.h5; }
case_kill_clean() { kill_stage clean "/cleaned/harmless/shard-00001" cleaned/harmless/ledger.json; }

# A job re-run over partial outputs (what a crash can leave): stray temp files, a half-written file under
# a temp name, missing completion marks. The re-run completes and matches the reference.
case_rerun() {
  reference
  copy_ref a
  head -c 3000 ref/corpora/harmless/shard-00001.h5 >a/corpora/harmless/shard-00001.h5.tmp.4242
  head -c 100 ref/scores/harmless/len/shard-00001.h5 >a/scores/harmless/len/shard-00001.h5.tmp.4242
  rm a/scores/harmless/len/shard-00001.h5 a/votes/harmless.h5 a/cleaned/harmless/ledger.json
  echo garbage >a/cleaned/harmless/.cleaned-00000.jsonl.part
  mpi2 run a.json >log1 2>&1 || { cat log1; fail "re-run over partial outputs failed"; }
  grep -q 'ingest skipped' log1 || { cat log1; fail "ingest should be current"; }
  same_outputs a ref harmless || fail "re-run over partial outputs differs from the reference"
  verify_ok a.json
  pass "re-run over stray temps, a lost score file, votes and ledger: completes, matches the reference"

  # the corpus manifest lost (ingest interrupted before its last write): everything downstream redone
  rm a/corpora/harmless/manifest.json
  verify_fails a.json "manifest.json"
  mpi2 run a.json >log2 2>&1 || { cat log2; fail "re-run after losing the manifest failed"; }
  grep -Eq '\] ingest +done' log2 || { cat log2; fail "ingest should rerun without its manifest"; }
  same_outputs a ref harmless || fail "re-run after losing the manifest differs"
  verify_ok a.json
  pass "a lost corpus manifest makes the corpus incomplete; the re-run re-ingests and matches"
}

source "$HERE/trust_cases.sh"
"case_$CASE"
echo "${PASSED:-0} passed, 0 failed"
