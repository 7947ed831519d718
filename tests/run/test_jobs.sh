#!/usr/bin/env bash
# run.jobs - every job file in jobs/ passes the strict schema and plans all its stages as "to run"
# (nothing exists yet in an empty folder): `quorum run JOB --status`.
# usage: test_jobs.sh QUORUM JOBS_DIR
set -uo pipefail
QUORUM=$1 JOBS=$2
T=$(mktemp -d /tmp/quorum-jobs.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
n=0
for j in "$JOBS"/*.json; do
  out=$("$QUORUM" run "$j" --status 2>&1) || { echo "$out"; echo "FAIL: $j: exit $?"; exit 1; }
  for s in ingest score vote clean report; do
    echo "$out" | grep -Eq "\] $s +to run" || { echo "$out"; echo "FAIL: $j: $s not planned"; exit 1; }
  done
  n=$((n + 1))
done
[ "$n" -ge 3 ] || { echo "FAIL: expected jobs/hh-rlhf.json, jobs/multi.json and jobs/layouts.json"; exit 1; }
echo "$n passed, 0 failed"
