#!/usr/bin/env bash
# run.pipeline - `quorum run` on a small HH job (harmless-base, 300 lines, 3 builtin members, 2 ranks):
#  1. produces every stage's outputs, with the same content as the stage-by-stage CLI
#     (quorum ingest/score/vote/clean/report, 1 rank) run into another folder: the independent reference;
#  2. a second run skips every stage and writes nothing;
#  3. a lost score file redoes that file only; a touched job file nothing; a changed vote config redoes
#     vote, clean and report (stage records), and --status says why;
#  4. SIGUSR1 during a slowed score stage exits 99, and the rerun resumes to the same outputs;
#  5. --corpus runs one corpus only; bad arguments fail with one line.
# usage: test_run.sh QUORUM SHARED_DIR MPIEXEC NP_FLAG
set -uo pipefail
QUORUM=$1 SHARED=$2 MPIEXEC=$3 NPFLAG=$4
source "$(dirname "$0")/lib.sh"
[ -f "$SHARED/data/hh-rlhf/harmless-base-test.jsonl.gz" ] || { echo "SKIP: no HH data under $SHARED"; exit 77; }
command -v h5diff >/dev/null || { echo "SKIP: h5diff (hdf5-tools) is not installed"; exit 77; }

T=$(mktemp -d /tmp/quorum-run.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
mpi() { "$MPIEXEC" "$NPFLAG" 2 --oversubscribe "$QUORUM" "$@"; }

# ---- 1. all outputs, equal to the stage-by-stage CLI
write_job a.json "$T/a" harmless=harmless-base:300
mpi run a.json >log1 2>&1 || { cat log1; fail "quorum run exited $?"; }
for s in ingest score vote clean report; do
  grep -Eq "run: \[[0-9]/6\] $s +done in" log1 || { cat log1; fail "no 'done' line for stage $s"; }
done
grep -q 'dpo    skipped (no "dpo" object' log1 || { cat log1; fail "dpo not reported as skipped"; }
for f in corpora/harmless/manifest.json votes/harmless.h5 cleaned/harmless/ledger.json cleaned/harmless/cleaned.jsonl \
         report/report.json report/report.md; do
  [ -s "a/$f" ] || fail "missing output $f"
done
n_scores=$(find a/scores/harmless -name 'shard-*.h5' | wc -l)
[ "$n_scores" -eq 9 ] || fail "expected 3 members x 3 shards = 9 score files, found $n_scores"
pass "run produced every stage's outputs (9 score files)"

write_job b.json "$T/b" harmless=harmless-base:300
for c in ingest score vote clean report; do
  "$QUORUM" "$c" --job b.json >"log-b-$c" 2>&1 || { cat "log-b-$c"; fail "quorum $c exited $?"; }
done
same_outputs a b harmless || fail "quorum run differs from the stage-by-stage CLI"
pass "outputs (2 ranks) equal those of quorum ingest/score/vote/clean/report (1 rank)"

# ---- 2. second run: everything skipped, nothing written
before=$(tree_times a)
sleep 0.05
mpi run a.json >log2 2>&1 || { cat log2; fail "second run exited $?"; }
[ "$(grep -c 'skipped (outputs complete and current)' log2)" -eq 5 ] || { cat log2; fail "second run did not skip all 5 stages"; }
[ "$before" = "$(tree_times a)" ] || fail "second run rewrote files"
pass "second run skips all stages and writes nothing"

# ---- 3. partial invalidation (stage records: a stage reruns when the fingerprint of its inputs changed)
rm a/scores/harmless/hash/shard-00001.h5
mpi run a.json >log3 2>&1 || { cat log3; fail "resume run exited $?"; }
grep -q 'ingest skipped' log3 || { cat log3; fail "ingest should be skipped after losing a score file"; }
grep -q '8 shard score files already current' log3 || { cat log3; fail "score should redo exactly one shard file"; }
grep -Eq "\] score +done in" log3 || { cat log3; fail "score should rerun"; }
for s in vote clean report; do grep -Eq "\] $s +skipped" log3 || { cat log3; fail "$s: its inputs' fingerprint is unchanged"; }; done
same_outputs a b harmless || fail "outputs after a partial rerun differ"
sleep 0.05; touch a.json
mpi run a.json >log4 2>&1 || { cat log4; fail "run after touching the job exited $?"; }
[ "$(grep -c 'skipped (outputs complete and current)' log4)" -eq 5 ] || { cat log4; fail "a touched, unchanged job file must redo nothing"; }
sed -i 's/"high_frac": 0.5/"high_frac": 0.9/' a.json
mpi run a.json --status >log4s 2>&1 || { cat log4s; fail "--status exited $?"; }
grep -q 'vote   harmless: to run (input "config" changed)' log4s || { cat log4s; fail "--status does not say why vote reruns"; }
grep -q 'clean  harmless: to run (after vote)' log4s || { cat log4s; fail "--status: clean should run after vote"; }
grep -q 'score  harmless: current' log4s || { cat log4s; fail "--status: score should be current"; }
mpi run a.json >log4 2>&1 || { cat log4; fail "run after changing vote.high_frac exited $?"; }
for s in ingest score; do grep -Eq "\] $s +skipped" log4 || { cat log4; fail "$s should be skipped"; }; done
for s in vote clean report; do grep -Eq "\] $s +done in" log4 || { cat log4; fail "$s should rerun after vote.high_frac changed"; }; done
sed -i 's/"high_frac": 0.9/"high_frac": 0.5/' a.json
mpi run a.json >log4 2>&1 || { cat log4; fail "run after restoring vote.high_frac exited $?"; }
same_outputs a b harmless || fail "outputs after restoring the job differ"
pass "a lost score file redoes one file; a touched job redoes nothing; a changed vote config redoes vote, clean, report"

# ---- 4. preemption: SIGUSR1 mid-score -> exit 99; the rerun resumes and matches
write_job c.json "$T/c" harmless=harmless-base:300
QUORUM_TEST_SLOW_SHARD_MS=400 "$MPIEXEC" "$NPFLAG" 2 --oversubscribe -x QUORUM_TEST_SLOW_SHARD_MS "$QUORUM" run c.json \
  >log5 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q 'score  started' log5 && break; sleep 0.1; done
sleep 0.6
kill -USR1 "$pid"
wait "$pid"; rc=$?
[ "$rc" -eq 99 ] || { cat log5; fail "preempted run exited $rc, expected 99"; }
grep -q 'score  preempted' log5 || { cat log5; fail "no preemption line"; }
grep -q 'clean  started' log5 && fail "stages after the preempted one must not start"
done_files=$(find c/scores -name 'shard-*.h5' | wc -l)
[ "$done_files" -gt 0 ] && [ "$done_files" -lt 9 ] || fail "expected some but not all score files before the stop, found $done_files"
mpi run c.json >log6 2>&1 || { cat log6; fail "resumed run exited $?"; }
grep -q "$done_files shard score files already current" log6 || { cat log6; fail "the resumed run did not reuse $done_files files"; }
same_outputs c b harmless || fail "preempted + resumed outputs differ"
pass "SIGUSR1 -> exit 99 after $done_files/9 score files; resumed run gives identical outputs"

# ---- 5. --corpus, argument errors
write_job d.json "$T/d" harmless=harmless-base:120 helpful=helpful-base:120
mpi run d.json --corpus helpful --to vote >log7 2>&1 || { cat log7; fail "--corpus run exited $?"; }
[ -f d/votes/helpful.h5 ] && [ ! -e d/corpora/harmless ] || fail "--corpus helpful must touch helpful only"
"$QUORUM" run d.json --corpus nope >log8 2>&1; rc=$?
[ "$rc" -eq 1 ] && grep -q 'corpus "nope": no corpus of that name' log8 || { cat log8; fail "--corpus nope: rc $rc"; }
"$QUORUM" run d.json --from vote --to score >log9 2>&1; rc=$?
[ "$rc" -eq 2 ] && grep -q 'comes after' log9 || { cat log9; fail "--from after --to: rc $rc"; }
"$QUORUM" run d.json --to polish >log10 2>&1; rc=$?
[ "$rc" -eq 2 ] && grep -q 'unknown stage' log10 || { cat log10; fail "unknown stage: rc $rc"; }
pass "--corpus selects one corpus; bad arguments exit 1/2 with one line"
echo "$PASSED passed, 0 failed"
