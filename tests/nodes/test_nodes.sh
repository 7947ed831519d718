#!/usr/bin/env bash
# nodes.rehearsal - the multi-node rehearsal on one machine: 2 emulated nodes (network + UTS namespaces
# on a private bridge, tests/nodes/nodes.sh), and across them
#   mpi        Open MPI over TCP from a hostfile, rsh agent = enter the node's namespaces: 4 ranks on 2
#              nodes run the 2-corpus pipeline; outputs == a 1-rank direct run; bytes crossed the link;
#              node-local ranks map to devices 0,1 on each node (QUORUM_FAKE_GPUS_PER_NODE=2)
#   no shm     the same ranks with only shared-memory transports cannot reach each other
#   slurm      slurmctld on node0, one slurmd per node; slurm/submit runs the pipeline with 2 tasks per
#              node, as a chain with mpirun (reading the allocation) and as per-corpus arrays with
#              srun --mpi=pmix; outputs == the direct run
# Everything (namespaces, veths, daemons, /etc/netns files) is removed on exit, failure included.
# usage: test_nodes.sh QUORUM SHARED_DIR
set -uo pipefail
QUORUM=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") SHARED=$2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/tests/run/lib.sh"
source "$HERE/nodes.sh"
source "$ROOT/tests/slurm/cluster.sh"
require_pipeline
WAIT_S=${QUORUM_NODES_WAIT_S:-150}

# not under /tmp: every node has a /tmp of its own, and all of them must see T
T=$(mktemp -d /var/tmp/quorum-nodes-test.XXXXXX)
cleanup() {
  local left
  cluster_stop
  nodes_down
  left=$(nodes_leftovers)
  [ -z "$left" ] || echo "FAIL: left behind: $left" >&2
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
cd "$T"
show_logs() {
  local f
  for f in "$T"/logs/* "$T"/log-*; do [ -f "$f" ] && { echo "===== $f"; tail -n 40 "$f"; }; done
  [ "${CLUSTER_NODES:-0}" -gt 0 ] && { cluster_cmd squeue 2>&1; cluster_logs; }
}
die() { echo "FAIL: $*" >&2; show_logs >&2; exit 1; }

CORPORA="harmless=harmless-base:300 helpful=helpful-base:200"
write_job ref.json "$T/ref" $CORPORA
"$QUORUM" run ref.json >log-ref 2>&1 || { rc=$?; cat log-ref; fail "direct quorum run exited $rc"; }

nodes_up 2 || exit $?
echo "nodes up: $NODES_NAMES"
# Open MPI: TCP on the nodes' network only (each node also has lo, which must never carry rank traffic)
export OMPI_MCA_btl_tcp_if_include=$NODES_NET.0/24 OMPI_MCA_oob_tcp_if_include=$NODES_NET.0/24
printf 'node0 slots=2\nnode1 slots=2\n' >hosts
mpi() { node_exec 0 mpirun --hostfile "$T/hosts" --mca plm_rsh_agent "$NODES_AGENT" -np 4 "$@"; }

# ---- mpi: the pipeline on 4 ranks over 2 nodes
write_job mpi.json "$T/mpi" $CORPORA
before=$(nodes_link_bytes 1)
QUORUM_FAKE_GPUS_PER_NODE=2 mpi -x QUORUM_FAKE_GPUS_PER_NODE "$QUORUM" run "$T/mpi.json" >log-mpi 2>&1 \
  || die "quorum run over 2 nodes exited $?"
crossed=$(($(nodes_link_bytes 1) - before))
same_outputs mpi ref harmless helpful || die "2-node outputs differ from the 1-rank run"
pass "quorum run, 4 ranks on 2 nodes (hostfile + namespace rsh agent): outputs == 1-rank direct run"
[ "$crossed" -gt 100000 ] || die "only $crossed bytes crossed node1's link: the ranks did not talk over the network"
pass "rank traffic crossed the emulated link: $crossed bytes on node1's veth"
placement=$(grep -o 'placement: host node[0-9], node-local rank [0-9] of [0-9] -> device [0-9]' log-mpi | sort | uniq)
expect=$(printf 'placement: host node%d, node-local rank %d of 2 -> device %d\n' 0 0 0 0 1 1 1 0 0 1 1 1)
[ "$placement" = "$expect" ] || die "node-local placement: got
$placement
expected
$expect"
pass "node-local ranks: 0,1 on each node -> devices 0,1 on each node (not 0..3)"

# ---- no shm: with only self + shared memory, ranks on different nodes are unreachable
node_exec 0 timeout 60 mpirun --hostfile "$T/hosts" --mca plm_rsh_agent "$NODES_AGENT" --mca btl self,vader -np 4 \
  "$QUORUM" run "$T/mpi.json" --status >log-shm 2>&1 && die "shared-memory-only transports reached across nodes"
grep -q 'unreachable\|unable to reach' log-shm || die "shared-memory-only run failed for another reason"
pass "no shared memory between nodes: btl self,vader alone cannot connect node0 and node1"

# ---- slurm across the nodes
cluster_start "$T/cluster" 2 || exit $?
echo "cluster up: $(cluster_cmd sinfo -h -N -o '%N %t' | tr '\n' ' ')"
submit() { # NAME SUBMIT-ARGS...: submits job NAME (out dir $T/NAME) from node0, ids in ids-NAME
  local name=$1; shift
  write_job "$name.json" "$T/$name" $CORPORA
  cluster_cmd "$ROOT/slurm/submit" "$name.json" --bin "$QUORUM" --log-dir "$T/logs" --ntasks 4 --cpus-per-task 1 \
    --sbatch-arg --nodes=2 --sbatch-arg --ntasks-per-node=2 "$@" >"ids-$name" || die "slurm/submit $name failed"
  echo "$name: $(tr '\n' ' ' <"ids-$name")"
}
export QUORUM_MPIRUN_ARGS="--oversubscribe -x QUORUM_FAKE_GPUS_PER_NODE" QUORUM_FAKE_GPUS_PER_NODE=2
submit chain
submit array --array --launcher srun
all_ids=$(awk '{print $2}' ids-* | sort -u | paste -sd,)
deadline=$((SECONDS + WAIT_S))
msg=$(cluster_wait_completed "$all_ids" "$deadline") || die "$msg"
pass "all $(echo "$all_ids" | tr ',' '\n' | wc -l) jobs COMPLETED on the 2-node partition"
sid=$(awk '$1 == "score" {print $2}' ids-chain)
for n in node0 node1; do
  grep -q "placement: host $n, node-local rank 1 of 2 -> device 1" "$T/logs/quorum-score-$sid.out" \
    || die "chain score job: no rank with device 1 on $n"
done
same_outputs chain ref harmless helpful || die "chain outputs differ from the direct run"
pass "chain (mpirun reads the 2-node allocation, 2 ranks per node): outputs == 1-rank direct run"
aid=$(awk '$1 == "score" {print $2}' ids-array)
grep -q 'srun --mpi=pmix' "$T/logs/quorum-score-${aid}_1.out" || die "array jobs were not launched with srun"
grep -q 'placement: host node1' "$T/logs/quorum-score-${aid}_1.out" || die "array score task 1 ran no rank on node1"
same_outputs array ref harmless helpful || die "array outputs differ from the direct run"
pass "array (srun --mpi=pmix across both nodes, one task per corpus): outputs == 1-rank direct run"
echo "$PASSED passed, 0 failed"
