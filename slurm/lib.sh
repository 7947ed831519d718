# slurm/lib.sh - sourced by the quorum sbatch scripts: launch one `quorum` step inside the allocation,
# forward SLURM's early-warning SIGUSR1 to it, and requeue the job when the step says "preempted" (99).
#
# Environment (set by slurm/submit through --export, or by hand):
#   QUORUM_BIN       absolute path of the quorum binary (required)
#   QUORUM_JOB       absolute path of the job file (required)
#   QUORUM_CORPORA   corpus names joined with ':'; in a job array, task i runs corpus i (--corpus NAME)
#   QUORUM_LAUNCHER  mpirun (default: Open MPI 4 reads the SLURM allocation) | srun (srun --mpi=$QUORUM_SRUN_MPI)
#   QUORUM_SRUN_MPI  default pmix
#   QUORUM_MPIRUN_ARGS  extra mpirun arguments (e.g. "--oversubscribe --bind-to none")
#   QUORUM_MAX_REQUEUE  stop requeueing after this many restarts (default 20)
#   QUORUM_STEP_RETRIES  in-place relaunches of a step that crashed (SIGSEGV/SIGBUS/SIGABRT), default 1

QUORUM_EXIT_PREEMPTED=99

quorum_log() { echo "quorum-slurm: $(date -u +%H:%M:%S) job ${SLURM_JOB_ID:-?}: $*" >&2; }

# Prints "--corpus NAME" for array task i (nothing outside an array).
quorum_corpus_args() {
  [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && [ -n "${QUORUM_CORPORA:-}" ] || return 0
  local names i=${SLURM_ARRAY_TASK_ID}
  IFS=: read -r -a names <<<"$QUORUM_CORPORA"
  if [ "$i" -ge "${#names[@]}" ]; then
    quorum_log "array task $i but only ${#names[@]} corpora ($QUORUM_CORPORA)"; return 1
  fi
  echo "--corpus ${names[$i]}"
}

# The command line that starts the MPI ranks, one per SLURM task.
quorum_launcher() {
  case "${QUORUM_LAUNCHER:-mpirun}" in
    # -x: every rank sees the allocation's task count (defensive: on other nodes the ranks inherit the
    # environment of Open MPI's daemon step, whose SLURM_NTASKS is the node count).
    mpirun) echo "mpirun -x SLURM_NTASKS ${QUORUM_MPIRUN_ARGS:-}" ;;
    srun) echo "srun --mpi=${QUORUM_SRUN_MPI:-pmix}" ;;
    *) quorum_log "QUORUM_LAUNCHER=${QUORUM_LAUNCHER} is neither mpirun nor srun"; return 1 ;;
  esac
}

# quorum_launch ARGS...: starts the step, forwards SIGUSR1 to it, waits until it is gone; rc in $rc.
quorum_launch() {
  local child
  trap 'QUORUM_GOT_USR1=1; quorum_log "SIGUSR1: forwarding to the step (pid $child)"; kill -USR1 "$child" 2>/dev/null' USR1
  # shellcheck disable=SC2086 # launcher and corpus are word lists on purpose
  $launcher "$QUORUM_BIN" "$@" $corpus &
  child=$!
  [ "$QUORUM_GOT_USR1" = 1 ] && kill -USR1 "$child" 2>/dev/null # arrived while starting
  # wait returns early (>128) when a trapped signal arrives: keep waiting until the step is gone.
  while :; do
    wait "$child"; rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  wait "$child" 2>/dev/null; rc=$?
  trap - USR1
}

# quorum_step ARGS...: runs "$QUORUM_BIN ARGS..." under the launcher; on SIGUSR1 forwards the signal and
# waits; when the step exits 99 (or fails after a SIGUSR1), requeues this job (the requeued job resumes
# from per-shard / checkpoint state). A step that crashed (rank died of SIGSEGV, SIGBUS or SIGABRT: 139,
# 135, 134) without a SIGUSR1 is relaunched in place up to QUORUM_STEP_RETRIES times (default 1): every
# quorum output is written by temp + rename and a rerun skips finished work, so this is safe, and it rides
# out transient crashes in MPI start-up (Open MPI 4.1's PMIx model callback races getenv against setenv,
# open-mpi/ompi#13428: a rank dies before quorum runs a line). A deterministic crash fails again and the
# step fails with its code. Returns the step's exit code (0 after a requeue).
quorum_step() {
  : "${QUORUM_BIN:?QUORUM_BIN must name the quorum binary}" "${QUORUM_JOB:?QUORUM_JOB must name the job file}"
  local launcher corpus rc attempt=0
  launcher=$(quorum_launcher) || return 1
  corpus=$(quorum_corpus_args) || return 1
  quorum_log "restart ${SLURM_RESTART_COUNT:-0}: $launcher $QUORUM_BIN $* $corpus"
  QUORUM_GOT_USR1=0
  while :; do
    quorum_launch "$@"
    case "$rc" in 134|135|139) ;; *) break ;; esac
    [ "$QUORUM_GOT_USR1" = 0 ] && [ "$attempt" -lt "${QUORUM_STEP_RETRIES:-1}" ] || break
    attempt=$((attempt + 1))
    quorum_log "step crashed (exit $rc): relaunching in place ($attempt of ${QUORUM_STEP_RETRIES:-1})"
  done
  quorum_log "step exited $rc"
  # A step that died of the forwarded signal before quorum installed its handler failed for the same
  # reason: every quorum output is written by temp + rename, so requeueing it is just as safe.
  if [ "$rc" -eq "$QUORUM_EXIT_PREEMPTED" ] || { [ "$QUORUM_GOT_USR1" = 1 ] && [ "$rc" -ne 0 ]; }; then
    if [ "${SLURM_RESTART_COUNT:-0}" -ge "${QUORUM_MAX_REQUEUE:-20}" ]; then
      quorum_log "preempted, but already restarted ${SLURM_RESTART_COUNT} times: giving up"; return 1
    fi
    quorum_log "preempted: scontrol requeue $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" || { quorum_log "scontrol requeue failed"; return 1; }
    return 0
  fi
  return "$rc"
}
