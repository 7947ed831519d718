#!/usr/bin/env bash
# slurm.submit - slurm/submit --dry-run: the sbatch lines it would run (no cluster needed). Checks the
# dependency chain (afterok / aftercorr), one array task per corpus, GPU flags only when asked for, the
# exported environment, the dpo job only for jobs with a "dpo" object, and bad input.
set -uo pipefail
ROOT=$1
source "$ROOT/tests/run/lib.sh"
T=$(mktemp -d /tmp/quorum-submit.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
cat >three.json <<'J'
{"name": "t", "corpora": [{"name": "a", "path": "a.jsonl"}, {"name": "b", "path": "b.jsonl"},
 {"name": "c", "path": "c.jsonl"}], "committee": [{"name": "m", "path": "builtin:len"}],
 "dpo": {"policy": "models/p"}}
J
sub() { "$ROOT/slurm/submit" "$@" --dry-run --bin /opt/q/quorum --log-dir "$T/logs" 2>lines >ids; }
line() { sed -n "$1p" lines; }

sub three.json || fail "dry run exited $?"
[ "$(cat ids | tr '\n' ' ')" = "ingest 1001 score 1002 post 1003 dpo 1004 " ] || fail "ids: $(cat ids)"
line 1 | grep -q -- '--dependency' && fail "ingest must not depend on anything"
line 2 | grep -q -- '--dependency=afterok:1001 .*score.sbatch$' || fail "score: $(line 2)"
line 3 | grep -q -- '--dependency=afterok:1002 .*post.sbatch$' || fail "post: $(line 3)"
line 4 | grep -q -- '--dependency=afterok:1003 .*dpo.sbatch$' || fail "dpo: $(line 4)"
grep -q -- 'gpu' lines && fail "GPU flags without --gpus-per-task: $(grep gpu lines)"
line 1 | grep -q -- "--export=ALL,QUORUM_ROOT=$ROOT,QUORUM_BIN=/opt/q/quorum,QUORUM_JOB=$T/three.json,QUORUM_CORPORA=a:b:c,QUORUM_LAUNCHER=mpirun" \
  || fail "export: $(line 1)"
line 1 | grep -q -- "--output=$T/logs/%x-%j.out" || fail "log name (one job): $(line 1)"
[ -e "$T/logs" ] && fail "--dry-run created the log folder"
pass "chain: afterok ingest -> score -> post -> dpo, no GPU flags by default"

sub three.json --array --gpus-per-task 1 --ntasks 4 --launcher srun || fail "array dry run exited $?"
[ "$(cut -d' ' -f1 ids | tr '\n' ' ')" = "ingest score post report dpo " ] || fail "array ids: $(cat ids)"
for i in 1 2 3; do line $i | grep -q -- '--array=0-2' || fail "array task per corpus: $(line $i)"; done
line 2 | grep -q -- '--dependency=aftercorr:1001' || fail "score aftercorr: $(line 2)"
line 3 | grep -q -- '--dependency=aftercorr:1002 .*post.sbatch --to clean$' || fail "post: $(line 3)"
line 4 | grep -q -- '--dependency=afterok:1003 .*post.sbatch --from report$' || fail "report: $(line 4)"
line 4 | grep -q -- '--array' && fail "report must be one job"
for i in 1 2 3; do line $i | grep -q -- "--output=$T/logs/%x-%A_%a.out" || fail "array log name: $(line $i)"; done
line 4 | grep -q -- "--output=$T/logs/%x-%j.out" || fail "report log name: $(line 4)"
for i in 2 5; do line $i | grep -q -- '--gpus-per-task=1' || fail "GPU stage without GPU flag: $(line $i)"; done
for i in 1 3 4; do line $i | grep -q -- 'gpus' && fail "CPU stage with GPU flag: $(line $i)"; done
grep -c -- '--ntasks=4' lines | grep -qx 5 || fail "--ntasks not on every job"
grep -c -- 'QUORUM_LAUNCHER=srun' lines | grep -qx 5 || fail "--launcher not exported"
pass "array: aftercorr per-corpus arrays, report + dpo afterok, GPU flags on score/dpo only"

# QUORUM_CORPORA -> --corpus, as the sbatch scripts do it (lib.sh)
source "$ROOT/slurm/lib.sh"
[ "$(QUORUM_CORPORA=a:b:c SLURM_ARRAY_TASK_ID=1 quorum_corpus_args)" = "--corpus b" ] || fail "array task 1 -> corpus b"
[ -z "$(QUORUM_CORPORA=a:b:c quorum_corpus_args)" ] || fail "no --corpus outside an array"
QUORUM_CORPORA=a SLURM_ARRAY_TASK_ID=3 quorum_corpus_args 2>/dev/null && fail "task 3 of 1 corpus must fail"
[ "$(QUORUM_LAUNCHER=srun quorum_launcher)" = "srun --mpi=pmix" ] || fail "srun launcher"
pass "array task -> --corpus NAME; launcher selection"

echo '{"name": "x", "corpora": [{"path": "a.jsonl"}]}' >bad.json
sub bad.json; rc=$?
[ "$rc" -ne 0 ] && grep -q 'every corpus needs a name' lines || fail "corpus without a name: rc $rc"
echo '{"name": ' >broken.json
sub broken.json; rc=$?
[ "$rc" -ne 0 ] && grep -q 'broken.json' lines || fail "malformed JSON: rc $rc"
sub missing.json; rc=$?
[ "$rc" -ne 0 ] && grep -q 'no such job file' lines || fail "missing job file: rc $rc"
pass "bad job files fail with one line"
echo "$PASSED passed, 0 failed"
