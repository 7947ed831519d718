#!/usr/bin/env bash
# run.jobs - every job file in jobs/ passes the strict schema and plans all its stages as "to run"
# (nothing exists yet in an empty folder): `quorum run JOB --status`. The shipped jobs' data and models
# are not in the repository, so --status also names each missing input and exits 1.
# usage: test_jobs.sh QUORUM JOBS_DIR
set -uo pipefail
QUORUM=$1 JOBS=$2
T=$(mktemp -d /tmp/quorum-jobs.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
n=0
for j in "$JOBS"/*.json; do
  out=$("$QUORUM" run "$j" --status 2>&1); rc=$?
  missing=$(python3 - "$j" <<'PY'
import json, os, sys
j = json.load(open(sys.argv[1])); d = os.path.dirname(sys.argv[1])
paths = [c["path"] for c in j["corpora"]] + [m["path"] + "/config.json" for m in j["committee"]]
paths += [j["dpo"]["policy"] + "/config.json"] if "dpo" in j else []
print(sum(1 for p in paths if not p.startswith("builtin:") and not os.path.exists(os.path.join(d, p))))
PY
)
  [ "$rc" -eq $((missing > 0 ? 1 : 0)) ] || { echo "$out"; echo "FAIL: $j: exit $rc with $missing inputs missing"; exit 1; }
  [ "$(echo "$out" | grep -c 'quorum: error: .*\(the source is missing\|no readable config.json\|dpo.policy: missing\)')" -eq "$missing" ] ||
    { echo "$out"; echo "FAIL: $j: expected one error line per missing input ($missing)"; exit 1; }
  for s in ingest score vote clean report; do
    # a here-string, not `echo | grep -q`: under pipefail, grep -q leaving early can SIGPIPE the echo
    grep -Eq "\] $s +.*: to run" <<<"$out" || { echo "$out"; echo "FAIL: $j: $s not planned"; exit 1; }
  done
  n=$((n + 1))
done
[ "$n" -ge 3 ] || { echo "FAIL: expected jobs/hh-rlhf.json, jobs/multi.json and jobs/layouts.json"; exit 1; }
echo "$n passed, 0 failed"
