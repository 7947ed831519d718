# cluster.sh - a throw-away one-node SLURM cluster for tests (source it; bash).
#
#   cluster_start DIR   writes slurm.conf, cgroup.conf and a munge key under DIR, starts munged (own
#                       socket), slurmctld and slurmd, exports SLURM_CONF, waits for the node to be idle.
#                       Returns 77 (skip) when SLURM or munge is missing or cannot start.
#   cluster_start DIR N a cluster of the N emulated nodes that tests/nodes/nodes.sh's nodes_up made:
#                       slurmctld on node0, one slurmd per node in the node's namespaces, one partition
#                       over all of them. SLURM commands must then run on a node: cluster_cmd CMD...
#   cluster_cmd CMD...  runs a SLURM client command where it reaches slurmctld
#   cluster_wait_completed IDS DEADLINE  waits (until $SECONDS reaches DEADLINE) for the jobs (comma-
#                       separated ids) to leave the queue; returns 0 when every one COMPLETED, else prints
#                       what went wrong and returns 1
#   cluster_stop        stops the daemons it started, by pid (safe to call twice; use it in a trap).
#   cluster_logs        prints the daemon logs (for failure messages).
#
# Nothing outside DIR is touched: no cgroup plugins (proctrack/linuxproc, task/none), no accounting,
# ports chosen free at start. Must run as root (slurmd launches jobs as the submitting user).
# Per-node paths use slurm.conf's %n (the node name), so N slurmds share one DIR.

CLUSTER_PIDS=""

cluster_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cluster_logs() {
  local f
  for f in "$CLUSTER_DIR"/log/*.log; do
    [ -f "$f" ] || continue
    echo "----- $f (last 40 lines)"; tail -n 40 "$f"
  done
}

cluster_stop() {
  local p
  for p in $CLUSTER_PIDS; do kill "$p" 2>/dev/null || true; done
  for p in $CLUSTER_PIDS; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  CLUSTER_PIDS=""
}

# Waits up to $2 seconds for the pid file $1 to name a live process; prints the pid.
cluster_wait_pidfile() {
  local f=$1 t=$2 p
  for _ in $(seq $((t * 10))); do
    if [ -s "$f" ]; then p=$(cat "$f"); kill -0 "$p" 2>/dev/null && { echo "$p"; return 0; }; fi
    sleep 0.1
  done
  return 1
}

# cluster_daemon I CMD...: runs CMD on node I (emulated) or here (one-node cluster).
cluster_daemon() {
  local i=$1; shift
  if [ "${CLUSTER_NODES:-0}" -gt 0 ]; then node_exec "$i" "$@"; else "$@"; fi
}

cluster_cmd() { cluster_daemon 0 "$@"; }

cluster_start() {
  CLUSTER_DIR=$1 CLUSTER_NODES=${2:-0}
  local need
  for need in slurmctld slurmd munged sbatch scontrol sinfo; do
    command -v "$need" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
    command -v "$need" >/dev/null 2>&1 || { echo "SKIP: $need is not installed"; return 77; }
  done
  [ "$(id -u)" -eq 0 ] || { echo "SKIP: the SLURM test cluster needs root"; return 77; }
  local d=$CLUSTER_DIR cpus=${CLUSTER_CPUS:-8} host names addrs ctld hosts i
  host=$(hostname -s)
  names=$host addrs=127.0.0.1 ctld="$host(127.0.0.1)" hosts=$host
  if [ "$CLUSTER_NODES" -gt 0 ]; then
    names="node[0-$((CLUSTER_NODES - 1))]" addrs="$NODES_NET.[1-$CLUSTER_NODES]" ctld="node0($NODES_NET.1)"
    hosts=$NODES_NAMES
  fi
  mkdir -p "$d/state" "$d/spool" "$d/log" "$d/munge"
  chmod 755 "$d/munge"
  head -c 1024 /dev/urandom >"$d/munge/munge.key"; chmod 600 "$d/munge/munge.key"
  cat >"$d/slurm.conf" <<CONF
ClusterName=quorumtest
SlurmctldHost=$ctld
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(cluster_free_port)
SlurmdPort=$(cluster_free_port)
AuthType=auth/munge
# cred_expire: the job credential lifetime, which is also how long slurmctld holds a requeued batch job
# before it may start again (BeginTime = requeue + cred_expire + 1; slurm.conf(5)); 120 s by default, 10 s
# here so the requeue test waits for the real hold instead of forcing an early start.
AuthInfo=socket=$d/munge/munge.sock,cred_expire=${CLUSTER_CRED_EXPIRE:-10}
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/%n
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd-%n.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$d/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
MinJobAge=600
SchedulerParameters=sched_interval=1,sched_min_interval=100000
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$names NodeAddr=$addrs CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$names Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  : >"$d/plugstack.conf"
  cat >"$d/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
IgnoreSystemd=yes
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
CONF
  export SLURM_CONF=$d/slurm.conf
  munged --force --socket="$d/munge/munge.sock" --key-file="$d/munge/munge.key" \
    --pid-file="$d/munge/munged.pid" --log-file="$d/log/munged.log" --seed-file="$d/munge/seed" \
    || { echo "SKIP: munged cannot start"; return 77; }
  local p
  p=$(cluster_wait_pidfile "$d/munge/munged.pid" 10) || { echo "SKIP: munged did not start"; cluster_logs; return 77; }
  CLUSTER_PIDS="$CLUSTER_PIDS $p"
  cluster_daemon 0 slurmctld -f "$d/slurm.conf" -i || { echo "SKIP: slurmctld cannot start"; cluster_logs; return 77; }
  p=$(cluster_wait_pidfile "$d/slurmctld.pid" 20) || { echo "SKIP: slurmctld did not start"; cluster_logs; return 77; }
  CLUSTER_PIDS="$CLUSTER_PIDS $p"
  i=0
  for host in $hosts; do
    mkdir -p "$d/spool/$host"
    cluster_daemon "$i" slurmd -f "$d/slurm.conf" -N "$host" || { echo "SKIP: slurmd cannot start on $host"; cluster_logs; return 77; }
    p=$(cluster_wait_pidfile "$d/slurmd-$host.pid" 20) || { echo "SKIP: slurmd did not start on $host"; cluster_logs; return 77; }
    CLUSTER_PIDS="$CLUSTER_PIDS $p"
    i=$((i + 1))
  done
  local want=$(( CLUSTER_NODES > 0 ? CLUSTER_NODES : 1 ))
  for _ in $(seq 60); do
    if [ "$(cluster_cmd sinfo -h -N -o '%t' 2>/dev/null | grep -cx 'idle')" -eq "$want" ]; then return 0; fi
    sleep 0.5
  done
  echo "SKIP: the nodes never became idle:"; cluster_cmd sinfo -N -l 2>&1; cluster_logs
  return 77
}

cluster_wait_completed() {
  local ids=$1 deadline=$2 id states
  until [ -z "$(cluster_cmd squeue -h -j "$ids" 2>/dev/null)" ]; do
    [ $SECONDS -lt "$deadline" ] || { echo "jobs still queued/running at the deadline"; return 1; }
    sleep 1
  done
  for id in ${ids//,/ }; do
    states=$(cluster_cmd scontrol show job "$id" | grep -o 'JobState=[A-Z_]*' | sort -u | tr '\n' ' ')
    [ "$states" = "JobState=COMPLETED " ] || { echo "job $id ended as: $states"; return 1; }
  done
}
