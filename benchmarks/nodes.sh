#!/usr/bin/env bash
# benchmarks/nodes.sh [--quick] - scaling across emulated nodes (root; tests/nodes/nodes.sh makes them).
#
# 4 emulated nodes (network + UTS namespaces on one bridge, Open MPI over TCP between them), one rank
# per node, at 1, 2 and 4 nodes, with the links as they are (veth: memory speed) and shaped like a slow
# fabric (tc on every node's link: netem $SHAPE_RATE + $SHAPE_DELAY one way, or tbf $SHAPE_RATE alone
# where the kernel has no netem; results record which):
#   allreduce  build/benchmarks/allreduce_bench across the nodes (4 KiB .. 4 MiB f32 sum)
#   score      quorum run --to clean, tiny GPT-2 RM: strong (fixed corpus) and weak (pairs per node)
#              scaling; per-stage wall times from the run log, per-rank CPU seconds from /usr/bin/time
#   dpo        quorum dpo, same global batch at every node count: step time and the time rank 0 waits in
#              the gradient allreduce (metrics.jsonl allreduce_s)
# Writes benchmarks/out/nodes/{results.json, *.png, raw/}. All "nodes" share this machine's cores, so
# wall-time speedups are capped by the core count: benchmarks/nodes_collect.py reports CPU-normalised
# efficiency (CPU seconds at 1 node / CPU seconds at N) and the communication share separately.
# env: BUILD=build SHARED=../shared SHAPE_RATE=500mbit SHAPE_DELAY=200us (the delay needs sch_netem)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: benchmarks/nodes.sh [--quick]" >&2; exit 2 ;;
esac
ROOT=$PWD
BUILD=$(realpath "${BUILD:-build}")
SHARED=$(realpath "${SHARED:-../shared}")
SHAPE_RATE=${SHAPE_RATE:-500mbit} SHAPE_DELAY=${SHAPE_DELAY:-200us}
QUORUM=$BUILD/quorum AR=$BUILD/benchmarks/allreduce_bench
HH=$SHARED/data/hh-rlhf/harmless-base-test.jsonl.gz
for f in "$QUORUM" "$AR" "$HH" /usr/bin/time; do
  [ -e "$f" ] || { echo "benchmarks/nodes.sh: missing $f (build first; apt-get install time)" >&2; exit 1; }
done
if [ $QUICK = 1 ]; then P_STRONG=64;  P_WEAK=32; DPO_STEPS=2; AR_MAX=$((1 << 20)); AR_REPS=5
else                    P_STRONG=192; P_WEAK=64; DPO_STEPS=4; AR_MAX=$((4 << 20)); AR_REPS=10; fi
NODES_LIST="1 2 4" DPO_BATCH=8 DPO_PAIRS=32
OUT=$ROOT/benchmarks/out/nodes RAW=$ROOT/benchmarks/out/nodes/raw
rm -rf "$RAW"; mkdir -p "$RAW"
RUNS=$RAW/runs.jsonl; : >"$RUNS"
source "$ROOT/tests/nodes/nodes.sh"
T=$(mktemp -d /var/tmp/quorum-bench-nodes.XXXXXX) # outside /tmp: every node has its own /tmp
trap 'nodes_down; rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
log() { echo "[nodes $(date -u +%H:%M:%S)] $*" >&2; }

nodes_up 4 || { echo "benchmarks/nodes.sh: cannot create the emulated nodes (root, iproute2)" >&2; exit 1; }
# Open MPI on the nodes' network only (set for the mpirun calls alone: this host has no such interface)
MPIRUN=(env "OMPI_MCA_btl_tcp_if_include=$NODES_NET.0/24" "OMPI_MCA_oob_tcp_if_include=$NODES_NET.0/24" mpirun)
for n in $NODES_LIST; do
  : >"$T/hosts.$n"; for ((i = 0; i < n; i++)); do echo "node$i slots=1" >>"$T/hosts.$n"; done
done

# timed N TAG JSONFIELDS CMD...: CMD on N nodes (one rank each), every rank under /usr/bin/time (elapsed,
# user and system CPU seconds); one JSON line in runs.jsonl; the log in raw/TAG.log.
timed() {
  local n=$1 tag=$2 fields=$3; shift 3
  local t0 t1 i e u s el=() cpu=()
  t0=$(date +%s.%N)
  node_exec 0 "${MPIRUN[@]}" --hostfile "$T/hosts.$n" --mca plm_rsh_agent "$NODES_AGENT" -np "$n" -x OPENBLAS_NUM_THREADS \
    sh -c '/usr/bin/time -f "%e %U %S" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$T/time.$tag" "$@" >"$RAW/$tag.log" 2>&1 \
    || { echo "benchmarks/nodes.sh: $tag failed; log: $RAW/$tag.log" >&2; tail -5 "$RAW/$tag.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  for ((i = 0; i < n; i++)); do
    read -r e u s < <(tail -1 "$T/time.$tag.$i"); el+=("$e"); cpu+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
  done
  local IFS=,
  echo "{\"tag\":\"$tag\",\"nodes\":$n,$fields,\"wall_s\":$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'),\"rank_elapsed_s\":[${el[*]}],\"rank_cpu_s\":[${cpu[*]}],\"log\":\"raw/$tag.log\"}" >>"$RUNS"
}

date -u "+%Y-%m-%d %H:%M" >"$RAW/date.utc"
uptime >"$RAW/uptime.before"
log "tiny models"
"$QUORUM" init-model --arch gpt2 --layers 2 --dim 64 --heads 4 --head score --tokenizer "$SHARED/tokenizers/gpt2" \
  --out "$T/rm" >"$RAW/init-model.log" 2>&1
"$QUORUM" init-model --arch gpt2 --layers 2 --dim 64 --heads 4 --head lm --seed 2 --tokenizer "$SHARED/tokenizers/gpt2" \
  --out "$T/policy" >>"$RAW/init-model.log" 2>&1
"$QUORUM" ingest --out "$T/dpo" --name dpo --format hh --max-pairs "$DPO_PAIRS" --shard-size 8 "$HH" >"$RAW/dpo.ingest.log" 2>&1

job() { # FILE OUT PAIRS SHARD
  cat >"$1" <<JOB
{"name":"nodes","out_dir":"$2","shard_size":$4,
 "corpora":[{"name":"harmless","path":"$HH","format":"hh","split":"harmless","max_pairs":$3}],
 "committee":[{"name":"rm","path":"$T/rm","max_length":256,"batch_size":8}],
 "vote":{"margin":0.0,"high_frac":0.5},"clean":{"method":"sac","splits":["harmless"],"bad_threshold":0.0}}
JOB
}

for link in open shaped; do
  if [ $link = shaped ]; then nodes_shape "$SHAPE_RATE" "$SHAPE_DELAY"; else nodes_shape ""; fi
  [ $link = shaped ] && echo "$NODES_SHAPING" >"$RAW/shaping.txt"
  lf="\"link\":\"$link\",\"shaping\":\"$NODES_SHAPING\""
  for n in $NODES_LIST; do
    log "$link link, $n nodes: allreduce"
    if [ "$n" -gt 1 ]; then
      node_exec 0 "${MPIRUN[@]}" --hostfile "$T/hosts.$n" --mca plm_rsh_agent "$NODES_AGENT" -np "$n" "$AR" "$AR_MAX" "$AR_REPS" \
        >"$RAW/allreduce.$link.n$n.jsonl" 2>"$RAW/allreduce.$link.n$n.log"
    fi
    for mode in strong weak; do
      pairs=$P_STRONG; [ $mode = weak ] && pairs=$((P_WEAK * n))
      log "$link link, $n nodes: score $mode ($pairs pairs)"
      d=$T/$link.$mode.$n; rm -rf "$d"; mkdir -p "$d"; job "$d/job.json" "$d/out" "$pairs" $((pairs / 8))
      timed "$n" "score.$link.$mode.n$n" "$lf,\"bench\":\"score\",\"mode\":\"$mode\",\"pairs\":$pairs" \
        "$QUORUM" run "$d/job.json" --to clean
    done
    log "$link link, $n nodes: dpo ($DPO_STEPS steps x $DPO_BATCH pairs)"
    rm -rf "$T/dpo.out"
    timed "$n" "dpo.$link.n$n" "$lf,\"bench\":\"dpo\",\"steps\":$DPO_STEPS,\"batch_size\":$DPO_BATCH,\"metrics\":\"raw/dpo.$link.n$n.metrics.jsonl\"" \
      "$QUORUM" dpo --policy "$T/policy" --corpus-dir "$T/dpo/corpora/dpo" --out "$T/dpo.out" --steps "$DPO_STEPS" \
      --batch-size "$DPO_BATCH" --max-length 96 --max-prompt-length 48 --checkpoint-every 100000 --quiet
    cp "$T/dpo.out/metrics.jsonl" "$RAW/dpo.$link.n$n.metrics.jsonl"
  done
done
nodes_shape ""
uptime >"$RAW/uptime.after"
log "results.json and plots"
/usr/bin/python3 "$ROOT/benchmarks/nodes_collect.py" --out "$OUT"
log "done: $OUT/results.json"
