#!/usr/bin/env bash
# benchmarks/sched.sh - the score schedules side by side (quorum/score.h): 3 members of unequal cost on 2
# ranks, static (score_owner: rank 0 hosts members 0 and 2, rank 1 member 1) vs dynamic (rank-0 dispatcher),
# alternated REPEAT times in one run on the same ingested corpora. A member's cost is known and independent
# of the machine's load: builtin members plus QUORUM_TEST_SLOW_MEMBER_US (microseconds slept per pair
# scored, counted as busy time, as a model's forward would be). Figures are quorum's own summary line:
# wall seconds of the scoring loop, work (sum of every rank's busy seconds), busy fraction per rank.
# Goal (issue 25): dynamic busy >= 90% on every rank and wall within 10% of work / R.
# usage: benchmarks/sched.sh [build/quorum] [../shared]   env: SLOW="a:4000,b:2000,c:1000" REPEAT=2 RANKS=2
set -euo pipefail
cd "$(dirname "$0")/.."
QUORUM=$(realpath "${1:-build/quorum}")
SHARED=$(realpath "${2:-../shared}")
SLOW=${SLOW:-a:4000,b:2000,c:1000}
REPEAT=${REPEAT:-2}
RANKS=${RANKS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OUT=$(mktemp -d /tmp/quorum-bench-sched.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
cat > "$OUT/job.json" <<JOB
{"name":"sched","out_dir":"$OUT/out","shard_size":50,
 "corpora":[{"name":"harmless","path":"$SHARED/data/hh-rlhf/harmless-base-test.jsonl.gz","format":"hh","max_pairs":600},
            {"name":"helpful","path":"$SHARED/data/hh-rlhf/helpful-base-test.jsonl.gz","format":"hh","max_pairs":300}],
 "committee":[{"name":"a","path":"builtin:len"},{"name":"b","path":"builtin:hash:7"},{"name":"c","path":"builtin:kw:you"}]}
JOB
"$QUORUM" ingest --job "$OUT/job.json" 2>/dev/null
echo "sched.sh: $(date -u +%FT%TZ) $(hostname) ranks=$RANKS slow(us/pair)=$SLOW"
printf '%-8s %8s %8s %8s  %s\n' schedule wall_s work_s ideal_s "busy per rank [dynamic: idle = wait for units + tail]"
for i in $(seq "$REPEAT"); do
  for mode in static dynamic; do
    rm -rf "$OUT/out/scores"
    line=$(QUORUM_SCORE_SCHEDULE=$mode QUORUM_TEST_SLOW_MEMBER_US=$SLOW mpirun -np "$RANKS" --oversubscribe \
      -x QUORUM_SCORE_SCHEDULE -x QUORUM_TEST_SLOW_MEMBER_US "$QUORUM" score --job "$OUT/job.json" 2>&1 |
      grep "schedule, .* rank(s): wall")
    # "score: MODE schedule, R rank(s): wall W s, work X s (P% of wall x ranks); busy r0 A% r1 B%"
    # dynamic: where each rank's idle time went, from the schedule log (given_s, seconds per unit): waiting
    # for the next unit (request round trips) vs the tail (done before the last rank)
    echo "$line" | /usr/bin/python3 -c "
import json, re, sys
t = sys.stdin.read()
w, x = map(float, re.search(r'wall ([\d.]+) s, work ([\d.]+) s', t).groups())
busy = ' '.join(re.findall(r'r\d+ [\d.]+%', t))
idle = ''
if '$mode' == 'dynamic':
    units = [json.loads(l) for l in open('$OUT/out/scores/schedule.jsonl')]
    for r in range($RANKS):
        mine = sorted((u['given_s'], u['seconds']) for u in units if u['rank'] == r)
        wait = sum(b[0] - (a[0] + a[1]) for a, b in zip(mine, mine[1:])) + (mine[0][0] if mine else 0)
        tail = w - (mine[-1][0] + mine[-1][1]) if mine else w
        idle += ' r%d wait %.2f s tail %.2f s;' % (r, wait, tail)
print('%-8s %8.2f %8.2f %8.2f  %s %s' % ('$mode', w, x, x / $RANKS, busy, idle))"
  done
done
