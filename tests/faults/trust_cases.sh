# trust_cases.sh - faults.trust_* (issue 15): every output knows what it was made from. Sourced by
# faults.sh (its helpers: reference, copy_ref, job_at, q, mpi2, expect_clean_failure, verify_fails,
# verify_ok). Each case changes an input, the job, or an output the way a user (or an accident) would,
# and asserts the run ends in the right result (equal to a fresh run of the same job in a new folder)
# or in one clear error line; and that `quorum verify` names the link that no longer holds.

# job_edit FILE PYTHON: edits the job JSON j in place.
job_edit() {
  "$PY" - "$1" "$2" <<'PY' || fail "job edit failed"
import json, sys
p = sys.argv[1]; j = json.load(open(p)); exec(sys.argv[2]); json.dump(j, open(p, "w"), indent=1)
PY
}
# fresh_equal JOB DIR CORPUS...: a run of JOB into a new folder has the same outputs as DIR.
fresh_equal() {
  local job=$1 dir=$2; shift 2
  rm -rf "$T/fresh"
  "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); j["out_dir"]=sys.argv[2]; json.dump(j,open("fresh.json","w"),indent=1)' \
    "$job" "$T/fresh"
  q run fresh.json >fresh.log 2>&1 || { cat fresh.log; fail "fresh run of $job failed"; }
  same_outputs "$dir" "$T/fresh" "$@"
}
# tiny_rm DIR SEED: a random GPT-2 reward model (score head) with the GPT-2 tokenizer from ../shared.
tiny_rm() {
  local tok="$SHARED/tokenizers/gpt2"
  [ -f "$tok/tokenizer.json" ] || { echo "SKIP: no GPT-2 tokenizer under $SHARED/tokenizers"; exit 77; }
  q init-model --arch gpt2 --layers 1 --dim 16 --heads 2 --max-pos 128 --tokenizer "$tok" --head "${3:-score}" \
    --seed "$2" --out "$1" >/dev/null 2>&1 || fail "init-model $1 failed"
}
# held_run_bg: the reference, then `quorum run a.json` (2 ranks) in the background ($pid, log1), its score
# stage held after each shard while hold-a exists (QUORUM_TEST_HOLD_FILE); returns once score started.
# The caller removes hold-a when its checks are done: no timer to race on a slow machine.
held_run_bg() {
  reference
  job_at a.json "$T/a"
  touch hold-a
  QUORUM_TEST_HOLD_FILE=$PWD/hold-a timeout 120 "$MPIEXEC" "$NPFLAG" 2 --oversubscribe -x QUORUM_TEST_HOLD_FILE \
    "$QUORUM" run a.json >log1 2>&1 &
  pid=$!
  for _ in $(seq 300); do grep -q 'score  started' log1 && break; sleep 0.1; done
}
run_ok() { # JOB LOG: quorum run (2 ranks) must succeed
  mpi2 run "$1" >"$2" 2>&1 || { cat "$2"; fail "quorum run $1 exited $?"; }
}
ran() { grep -Eq "\] $2 +done in" "$1" || { cat "$1"; fail "stage $2 should have run"; }; }
skipped() { grep -Eq "\] $2 +skipped" "$1" || { cat "$1"; fail "stage $2 should have been skipped"; }; }

# A member replaced in place, its max_length changed, a builtin member's rule changed: the member's
# score files are redone (the others kept), and the result equals a fresh run.
case_trust_member() {
  cp "$SRC" "$T/harmless.jsonl.gz"
  tiny_rm rm 1
  job_at a.json "$T/a"
  job_edit a.json "j['corpora'][0]['max_pairs'] = 200; j['committee'].insert(0, {'name': 'rm', 'path': '$T/rm', 'max_length': 64})"
  run_ok a.json log0
  tiny_rm rm2 2
  cp rm2/model.safetensors rm/model.safetensors
  verify_fails a.json "member_fingerprint"
  run_ok a.json log1
  grep -q '6 shard score files already current' log1 || { cat log1; fail "replaced model: only its 2 score files should be redone"; }
  ran log1 vote; fresh_equal a.json a harmless || fail "replaced model: outputs differ from a fresh run"
  pass "member model replaced in place: verify names member_fingerprint; its scores redone, equal to a fresh run"

  job_edit a.json "j['committee'][0]['max_length'] = 48"
  run_ok a.json log2
  grep -q '6 shard score files already current' log2 || { cat log2; fail "max_length: only the member's files should be redone"; }
  fresh_equal a.json a harmless || fail "max_length changed: outputs differ from a fresh run"
  job_edit a.json "j['committee'][2]['path'] = 'builtin:hash:2'"
  run_ok a.json log3
  grep -q '6 shard score files already current' log3 || { cat log3; fail "builtin rule: only its files should be redone"; }
  fresh_equal a.json a harmless || fail "builtin rule changed: outputs differ from a fresh run"
  verify_ok a.json
  pass "member max_length / builtin rule changed: that member rescored, equal to a fresh run; verify passes"
}

# --force redoes the stages in range, score included.
case_trust_force() {
  reference
  copy_ref a
  mpi2 run a.json --from score --to score --force >log1 2>&1 || { cat log1; fail "--force score failed"; }
  grep -q ': 897 pair-scores to do, 0 shard score files already current' log1 || { cat log1; fail "--force did not rescore"; }
  mpi2 run a.json --from vote --force >log2 2>&1 || { cat log2; fail "--force vote.. failed"; }
  for s in vote clean report; do ran log2 $s; done
  same_outputs a ref harmless || fail "--force outputs differ from the reference"
  pass "--force really redoes score (897 pair-scores) and the later stages; same outputs"
}

# Ingest options that change the result: field mapping, split. Ingest reruns; equal to a fresh run.
case_trust_ingest_options() {
  reference
  copy_ref a
  job_edit a.json "j['corpora'][0]['field_chosen'] = 'rejected'; j['corpora'][0]['field_rejected'] = 'chosen'"
  q run a.json --status >st 2>&1
  grep -q 'ingest harmless: to run (input "options" changed)' st || { cat st; fail "--status does not say the options changed"; }
  verify_fails a.json "link ingest of harmless"
  run_ok a.json log1
  ran log1 ingest; fresh_equal a.json a harmless || fail "swapped fields: outputs differ from a fresh run"
  cmp -s a/cleaned/harmless/cleaned.jsonl ref/cleaned/harmless/cleaned.jsonl && fail "swapped fields: labels unchanged"
  job_edit a.json "j['corpora'][0]['split'] = 'helpful'; j['clean']['splits'] = ['helpful']"
  run_ok a.json log2
  ran log2 ingest; fresh_equal a.json a harmless || fail "split changed: outputs differ from a fresh run"
  verify_ok a.json
  pass "field_chosen/field_rejected swapped, split changed: ingest reruns, equal to a fresh run"
}

# gzip with two members: read to the end; the second member damaged: refused, nothing ingested.
case_trust_gzip() {
  gzip -dc "$SRC" | head -300 | gzip >"$T/harmless.jsonl.gz"
  job_at ref.json "$T/ref"
  q run ref.json >ref.log 2>&1 || { cat ref.log; fail "reference run failed"; }
  gzip -dc "$SRC" | head -150 | gzip >two.gz
  gzip -dc "$SRC" | sed -n '151,300p' | gzip >second.gz
  cat second.gz >>two.gz
  cp two.gz "$T/harmless.jsonl.gz"
  job_at a.json "$T/a"
  run_ok a.json log1
  same_outputs a ref harmless || fail "two-member gzip: outputs differ from the one-member reference"
  pass "two-member gzip: all 300 lines read, outputs equal the one-member reference"
  gzip -dc "$SRC" | head -150 | gzip >"$T/harmless.jsonl.gz"
  size=$(stat -c %s second.gz)
  head -c $((size / 2)) second.gz >>"$T/harmless.jsonl.gz"
  echo "garbage" >>"$T/harmless.jsonl.gz"
  job_at b.json "$T/b"
  mpi2 run b.json >log2 2>&1; expect_clean_failure log2 $? "harmless.jsonl.gz" "damaged second gzip member"
  [ "$(grep -c 'quorum: error:' log2)" -eq 1 ] || { cat log2; fail "expected one error line"; }
  [ ! -e b/corpora/harmless/manifest.json ] || fail "a damaged gzip produced a manifest"
  pass "damaged second gzip member: one error line naming the file, nothing ingested"
}

# Names that would share or escape folders are refused in one line.
case_trust_names() {
  cp "$SRC" "$T/harmless.jsonl.gz"
  for bad in "j['corpora'][0]['name'] = '..'" "j['committee'][1]['name'] = '..'" "j['corpora'][0]['name'] = '.'" \
             "j['committee'][0]['name'] = 'a/b'"; do
    job_at n.json "$T/n"
    job_edit n.json "$bad"
    mpi2 run n.json >log 2>&1; expect_clean_failure log $? "name\": names use only" "name ${bad#*= }"
    [ "$(grep -c 'quorum: error:' log)" -eq 1 ] || { cat log; fail "an error every rank hits must print once"; }
    [ ! -e "$T/n" ] || fail "a refused job created its out_dir"
  done
  job_at n.json "$T/n"
  job_edit n.json "j['corpora'][0]['name'] = '..'"
  for c in score vote clean; do # every command's job loading: one line from 2 ranks
    mpi2 "$c" --job n.json >log 2>&1; expect_clean_failure log $? "name\": names use only" "quorum $c"
    [ "$(grep -c 'quorum: error:' log)" -eq 1 ] || { cat log; fail "quorum $c: an error every rank hits must print once"; }
  done
  printf '{"name": "x", "corpora": [], "committee": [{"name": "len", "path": "builtin:len"}]}' >z.json
  q run z.json >log 2>&1; expect_clean_failure log $? "the job has no corpus" "0 corpora"
  mkfifo fifo.jsonl
  q ingest --out f --name f fifo.jsonl >log 2>&1; expect_clean_failure log $? "FIFO" "a FIFO input"
  pass "names '..', '.', 'a/b' for corpora and members (2 ranks: printed once), 0 corpora, a FIFO: one error line each"
}

# Another member's score file copied into a member's folder: vote refuses naming it, verify too, run
# rescores it and matches the reference.
case_trust_member_copy() {
  reference
  copy_ref a
  cp a/scores/harmless/len/shard-00000.h5 a/scores/harmless/hash/shard-00000.h5
  q vote --job a.json >log1 2>&1; expect_clean_failure log1 $? 'hash/shard-00000.h5: attribute "member" is "len"' "vote over a copied score file"
  verify_fails a.json 'hash/shard-00000.h5: member attribute'
  run_ok a.json log2
  grep -q '8 shard score files already current' log2 || { cat log2; fail "the copied file should be rescored"; }
  same_outputs a ref harmless || fail "outputs after rescoring differ from the reference"
  verify_ok a.json
  pass "another member's score file copied in: vote and verify name it; run rescores it and matches"
}

# A JSON array or gzip named .jsonl is read by content; a whole file rejected (UTF-16, CR-only line ends)
# or a reject rate at reject_limit: one error line with the top reasons and a hint; nothing after ingest runs.
case_trust_rejected() {
  gzip -dc "$SRC" | head -50 >lines.jsonl
  "$PY" -c 'import json,sys; print(json.dumps([json.loads(l) for l in open("lines.jsonl")], indent=1))' >array.jsonl
  gzip -c lines.jsonl >gz.jsonl
  iconv -f UTF-8 -t UTF-16 lines.jsonl >u16.jsonl
  tr '\n' '\r' <lines.jsonl >cr.jsonl
  for name in array gz; do # read by content (reader.h): a JSON array or gzip under a .jsonl name is fine
    job_at r.json "$T/r-$name"
    sed -i "s#$T/harmless.jsonl.gz#$T/$name.jsonl#" r.json
    run_ok r.json "log-$name"
    grep -q "read as .*, 50 records" "log-$name" || { cat "log-$name"; fail "$name: not read as 50 records"; }
  done
  for f in u16:"UTF-16" cr:"CR-only"; do
    name=${f%%:*} hint=${f#*:}
    job_at r.json "$T/r-$name"
    sed -i "s#$T/harmless.jsonl.gz#$T/$name.jsonl#" r.json
    mpi2 run r.json >log 2>&1; expect_clean_failure log $? "$hint" "whole file rejected ($name)"
    grep -F 'quorum: error:' log | grep -q "lines rejected" || { cat log; fail "$name: no reject count"; }
    [ "$(grep -c 'quorum: error:' log)" -eq 1 ] || { cat log; fail "$name: expected one error line"; }
    grep -q 'score  started' log && fail "$name: the pipeline went on after a rejected corpus"
    [ ! -e "$T/r-$name/corpora/harmless/manifest.json" ] || fail "$name: a manifest was written"
  done
  { head -20 lines.jsonl; for i in $(seq 30); do echo '{"chosen": 1}'; done; } >half.jsonl
  job_at h.json "$T/h"
  sed -i "s#$T/harmless.jsonl.gz#$T/half.jsonl#" h.json
  run_ok h.json log2   # 30 of 50 rejected: under the default limit (every line)
  job_edit h.json "j['reject_limit'] = 0.5"
  mpi2 run h.json >log3 2>&1; expect_clean_failure log3 $? "30 of 50 lines rejected (reject_limit 0.5): wrong type x30" "reject_limit 0.5"
  pass "JSON array, gzip named .jsonl: ingested; UTF-16, CR-only: one line with the hint; reject_limit 0.5 enforced"
}

# The input shrank: no cleaned shard is left beside a manifest that does not list it.
case_trust_shrink() {
  reference
  copy_ref a
  job_edit a.json "j['corpora'][0]['max_pairs'] = 150"
  verify_fails a.json "link ingest of harmless"
  run_ok a.json log1
  [ ! -e a/cleaned/harmless/shard-00002.h5 ] || fail "a stale cleaned shard-00002.h5 is left behind"
  [ ! -e a/corpora/harmless/shard-00002.h5 ] || fail "a stale corpus shard-00002.h5 is left behind"
  [ -z "$(find a/scores -name shard-00002.h5)" ] || fail "stale score files shard-00002.h5 are left behind"
  fresh_equal a.json a harmless || fail "shrunk input: outputs differ from a fresh run"
  diff <(cd a/cleaned/harmless && ls shard-*.h5) <(cd fresh/cleaned/harmless && ls shard-*.h5) || fail "shard files differ"
  verify_ok a.json
  cp ref/cleaned/harmless/shard-00002.h5 a/cleaned/harmless/
  verify_fails a.json "cleaned/harmless/shard-00002.h5: present"
  pass "input shrank 300 -> 150 lines: no stale shard files, equal to a fresh run; verify names a stale shard"
}

# NaN weights: score stops naming member, model and pair; nothing written; fixed model -> rerun works.
case_trust_nan() {
  cp "$SRC" "$T/harmless.jsonl.gz"
  tiny_rm rm 1
  cp rm/model.safetensors good.safetensors
  "$PY" - rm/model.safetensors <<'PY' || fail "could not poison the model"
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
s, e = h["score.weight"]["data_offsets"]
b[8 + n + s:8 + n + s + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(b)
PY
  job_at a.json "$T/a"
  job_edit a.json "j['corpora'][0]['max_pairs'] = 200; j['committee'] = [{'name': 'rm', 'path': '$T/rm', 'max_length': 64}, j['committee'][0]]"
  mpi2 run a.json >log1 2>&1; expect_clean_failure log1 $? "member \"rm\": corpus \"harmless\" pair" "NaN weights"
  grep -F 'quorum: error:' log1 | grep -q "$T/rm" || { cat log1; fail "the error does not name the model folder"; }
  [ -z "$(find a/scores/harmless/rm -name 'shard-*.h5' 2>/dev/null)" ] || fail "a score file was written with NaN rewards"
  cp good.safetensors rm/model.safetensors
  run_ok a.json log2
  fresh_equal a.json a harmless || fail "after fixing the model: outputs differ from a fresh run"
  pass "NaN in a member's weights: one line naming member, model and pair, nothing written; fixed -> rerun matches"
}

# --corpus X --force on report, then a full run: the report is redone over every corpus.
case_trust_report() {
  write_job a.json "$T/a" harmless=harmless-base:120 helpful=helpful-base:120
  run_ok a.json log1
  mpi2 run a.json --corpus helpful --from report --force >log2 2>&1 || { cat log2; fail "--corpus report failed"; }
  grep -q '"corpus":.*"harmless"' a/report/report.json && fail "the --corpus report should cover helpful only"
  verify_fails a.json "link report"
  run_ok a.json log3
  ran log3 report
  fresh_equal a.json a harmless helpful || fail "report after --corpus differs from a fresh full run"
  pass "--corpus X --force report then a full run: the report is redone over both corpora, equal to a fresh run"
}

# Two runs on one out_dir: the second stops at once, naming the holder; the first completes.
case_trust_lock() {
  # Each background run holds its score stage while hold-* exists (QUORUM_TEST_HOLD_FILE): the checks
  # below run while it is certainly busy, however slow the machine.
  held_run_bg
  q run a.json >log2 2>&1; expect_clean_failure log2 $? "another quorum run is using this output folder (pid" "second run"
  [ "$(grep -c 'quorum: error:' log2)" -eq 1 ] || { cat log2; fail "expected one error line"; }
  rm -f hold-a
  wait "$pid" || { cat log1; fail "the first run failed"; }
  same_outputs a ref harmless || fail "outputs of the locked run differ from the reference"
  write_job d.json "$T/d" harmless=harmless-base:300 helpful=helpful-base:100
  touch hold-d
  QUORUM_TEST_HOLD_FILE=$PWD/hold-d timeout 120 "$MPIEXEC" "$NPFLAG" 2 --oversubscribe -x QUORUM_TEST_HOLD_FILE \
    "$QUORUM" run d.json --corpus harmless --to clean >log3 2>&1 &
  pid=$!
  for _ in $(seq 300); do grep -q 'score  started' log3 && break; sleep 0.1; done
  q run d.json --corpus helpful --to clean >log4 2>&1 || { cat log4; fail "a run of another corpus was refused"; }
  q run d.json --corpus harmless >log5 2>&1; expect_clean_failure log5 $? ".quorum.lock.harmless: another quorum run is using this corpus" "same corpus"
  q run d.json >log6 2>&1; expect_clean_failure log6 $? ".quorum.lock: another quorum run is using this output folder" "whole job"
  kill -0 "$pid" 2>/dev/null || { cat log3; fail "the held --corpus harmless run ended before the checks"; }
  rm -f hold-d
  wait "$pid" || { cat log3; fail "the --corpus harmless run failed"; }
  q run d.json --from report >log7 2>&1 || { cat log7; fail "report after the per-corpus runs failed"; }
  fresh_equal d.json d harmless helpful || fail "per-corpus runs side by side differ from a fresh run"
  pass "a second run on a busy out_dir: one line naming the holder; runs of two corpora side by side; equal to fresh runs"
}

# dpo: a changed trainer option never resumes the old run; --force retrains; equal to fresh runs.
case_trust_dpo() {
  cp "$SRC" "$T/harmless.jsonl.gz"
  tiny_rm pol 5 lm
  job_at a.json "$T/a"
  job_edit a.json "j['corpora'][0]['max_pairs'] = 60; j['dpo'] = {'policy': '$T/pol', 'steps': 4, 'batch_size': 4, 'checkpoint_every': 2, 'max_length': 64, 'max_prompt_length': 32, 'lr': 1e-3}"
  run_ok a.json log1
  ran log1 dpo
  run_ok a.json log2
  skipped log2 dpo
  job_edit a.json "j['dpo']['beta'] = 0.5"
  verify_fails a.json "link dpo"
  run_ok a.json log3
  grep -q 'resumed from' log3 && { cat log3; fail "a changed beta resumed the old checkpoint"; }
  grep -q 'moved to .*/dpo.stale-1, training starts fresh' log3 || { cat log3; fail "the old dpo run was not set aside"; }
  rm -rf "$T/fresh"
  "$PY" -c 'import json; j=json.load(open("a.json")); j["out_dir"]="'"$T"'/fresh"; json.dump(j,open("fresh.json","w"))'
  run_ok fresh.json log4
  cmp a/dpo/final/model.safetensors fresh/dpo/final/model.safetensors || fail "dpo after a beta change differs from a fresh run"
  mpi2 run a.json --from dpo --force >log5 2>&1 || { cat log5; fail "--from dpo --force failed"; }
  grep -q 'resumed from' log5 && fail "--force resumed a checkpoint"
  cmp a/dpo/final/model.safetensors fresh/dpo/final/model.safetensors || fail "dpo --force differs from a fresh run"
  pass "dpo: a changed beta and --force start fresh (old run set aside), equal to a fresh run; unchanged: skipped"
}

# Scores (HF member + builtin) and cleaned outputs are bit-identical at 1, 2 and 3 ranks and across a
# kill at 3 ranks + resume at 2; pairs identical after truncation are ties by construction.
case_trust_ranks() {
  cp "$SRC" "$T/harmless.jsonl.gz"
  tiny_rm rm 4
  mk() { # JOB OUT
    job_at "$1" "$T/$2"
    job_edit "$1" "j['shard_size'] = 50; j['corpora'][0]['max_pairs'] = 200; j['committee'] = [{'name': 'rm', 'path': '$T/rm', 'max_length': 96, 'batch_size': 3}, j['committee'][0]]"
  }
  for np in 1 2 3; do
    mk r$np.json r$np
    timeout 120 "$MPIEXEC" "$NPFLAG" $np --oversubscribe "$QUORUM" run r$np.json >log$np 2>&1 || { cat log$np; fail "run at $np ranks"; }
  done
  for np in 2 3; do
    for f in r1/scores/harmless/*/shard-*.h5; do
      h5diff "$f" "${f/r1/r$np}" >/dev/null || fail "${f#r1/} differs between 1 and $np ranks"
    done
    same_outputs r1 r$np harmless || fail "outputs differ between 1 and $np ranks"
  done
  mk k.json k
  # 1 s after each shard: units are handed out dynamically and the other ranks score on until mpirun notices
  # the kill, so each shard must outlast that for the kill to land mid-stage
  QUORUM_TEST_DIE_AFTER_SHARDS=1 QUORUM_TEST_SLOW_SHARD_MS=1000 timeout 120 "$MPIEXEC" "$NPFLAG" 3 --oversubscribe \
    -x QUORUM_TEST_DIE_AFTER_SHARDS -x QUORUM_TEST_SLOW_SHARD_MS "$QUORUM" run k.json >logk 2>&1 && fail "the killed run exited 0"
  n=$(find k/scores -name 'shard-*.h5' | wc -l)
  [ "$n" -gt 0 ] && [ "$n" -lt 8 ] || fail "expected some score files before the kill, found $n"
  mpi2 run k.json >logk2 2>&1 || { cat logk2; fail "resume at 2 ranks failed"; }
  for f in r1/scores/harmless/*/shard-*.h5; do h5diff "$f" "${f/r1/k}" >/dev/null || fail "${f#r1/} differs after kill + resume"; done
  same_outputs r1 k harmless || fail "outputs differ after a kill at 3 ranks and a resume at 2"
  pass "HF + builtin scores and cleaned outputs bit-identical at 1, 2, 3 ranks and after kill (3) + resume (2, $n files kept)"

  long=$(printf 'word %.0s' $(seq 200))
  for i in $(seq 6); do
    printf '{"prompt": "question %d", "chosen": "%s A%d", "rejected": "%s B%d"}\n' "$i" "$long" "$i" "$long" "$i"
  done >ties.jsonl
  gzip -dc "$SRC" | head -20 >>ties.jsonl
  mk t.json t
  sed -i "s#$T/harmless.jsonl.gz#$T/ties.jsonl#; s#\"format\": \"hh\"#\"format\": \"auto\"#" t.json
  mpi2 run t.json --to vote >logt 2>&1 || { cat logt; fail "ties run failed"; }
  grep -q 'rm: 6 of 26 pairs are identical after truncation to max_length 96: scored as ties' logt ||
    { cat logt; fail "the ties were not counted"; }
  "$PY" - t/scores/harmless/rm/shard-00000.h5 t/votes/harmless.h5 <<'PY' || fail "ties are not exact ties"
import h5py, sys
s = h5py.File(sys.argv[1]); c, r = s["chosen"][()], s["rejected"][()]
assert all(c[i] == r[i] for i in range(6)), (c[:6], r[:6])
assert all(c[i] != r[i] for i in range(6, 26)), "a pair that differs was scored as a tie"
v = h5py.File(sys.argv[2]); vc, vr = v["chosen"][()], v["rejected"][()]
assert all(vc[0][i] == vr[0][i] for i in range(6))
PY
  pass "6 pairs identical after truncation: scored as exact ties (chosen == rejected bit for bit), counted"
}

# SIGTERM at the ranks (what srun and slurmd deliver) during score: every rank writes its shard in flight
# and mpirun exits 99; the rerun resumes to the reference. (SIGTERM to mpirun itself: Open MPI aborts the
# job and returns 1 whatever the ranks return; README says so.)
case_trust_sigterm() {
  held_run_bg
  mp=$(pgrep -P "$pid" | head -1)   # timeout's child: mpirun
  for r in $(pgrep -P "$mp"); do kill -TERM "$r"; done
  rm -f hold-a
  wait "$pid"; rc=$?
  [ "$rc" -eq 99 ] || { cat log1; fail "SIGTERM at the ranks: exit $rc, expected 99"; }
  grep -q 'score  preempted' log1 || { cat log1; fail "no preemption line"; }
  run_ok a.json log2
  same_outputs a ref harmless || fail "resumed outputs differ from the reference"
  pass "SIGTERM at the ranks during score: exit 99; the rerun resumes and matches the reference"
}

# Load-time member checks: max_length beyond a GPT-2 model's n_positions, a tokenizer with more ids than
# the model's vocabulary: one line naming the config, the member and both numbers, before any scoring.
case_trust_member_load() {
  cp "$SRC" "$T/harmless.jsonl.gz"
  tiny_rm rm 1
  job_at a.json "$T/a"
  job_edit a.json "j['corpora'][0]['max_pairs'] = 50; j['committee'] = [{'name': 'rm', 'path': '$T/rm', 'max_length': 512}]"
  mpi2 run a.json >log1 2>&1; expect_clean_failure log1 $? "rm/config.json: n_positions 128 is less than committee member rm's max_length 512" "max_length > n_positions"
  [ -z "$(find a/scores -name 'shard-*.h5' 2>/dev/null)" ] || fail "scores written for a member that does not fit"
  job_edit a.json "j['committee'][0]['max_length'] = 64"
  "$PY" - rm/tokenizer.json <<'PY' || fail "tokenizer edit"
import json, sys
p = sys.argv[1]; t = json.load(open(p))
t["added_tokens"].append({"id": 60000, "content": "<extra>", "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True})
json.dump(t, open(p, "w"))
PY
  mpi2 run a.json >log2 2>&1; expect_clean_failure log2 $? "rm/config.json: vocab_size 50257 is smaller than the tokenizer's 60001 ids" "tokenizer of another model"
  pass "max_length > n_positions and a tokenizer larger than the vocabulary: one line at load, nothing scored"
}
