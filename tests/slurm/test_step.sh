#!/usr/bin/env bash
# slurm.step - slurm/lib.sh quorum_step without a cluster: a stand-in quorum under mpirun -np 1 and a
# stand-in scontrol that records its arguments. Checks: SIGUSR1 to the batch shell is forwarded, exit 99
# requeues ($SLURM_JOB_ID), a step killed by the forwarded signal is requeued too, a plain failure is not,
# the restart cap stops requeueing, and a crashed step (SIGSEGV) is relaunched in place once.
# usage: test_step.sh ROOT MPIEXEC
set -uo pipefail
ROOT=$1 MPIEXEC=$2
source "$ROOT/tests/run/lib.sh"
T=$(mktemp -d /tmp/quorum-step.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/bin"
printf '#!/bin/sh\necho "$@" >>"%s/scontrol.calls"\n' "$T" >"$T/bin/scontrol"
# Stand-in quorum: MODE=trap exits 99 on USR1 (as quorum does), MODE=die has no handler, MODE=fail exits 3,
# MODE=crash dies of SIGSEGV at start, MODE=crash_once only on its first launch (a transient start-up crash).
cat >"$T/fake" <<'F'
#!/bin/bash
[ "$MODE" = trap ] && trap 'exit 99' USR1
[ "$MODE" = fail ] && exit 3
echo launch >>"$STARTED.launches"
[ "$MODE" = crash ] && kill -SEGV $$
[ "$MODE" = crash_once ] && [ "$(wc -l <"$STARTED.launches")" -eq 1 ] && kill -SEGV $$
[ "$MODE" = crash_once ] && exit 0
touch "$STARTED"
for _ in $(seq 200); do sleep 0.05; done
exit 0
F
chmod +x "$T/bin/scontrol" "$T/fake"
export PATH="$T/bin:$(dirname "$MPIEXEC"):$PATH" QUORUM_BIN="$T/fake" QUORUM_JOB=/dev/null SLURM_JOB_ID=42
export QUORUM_MPIRUN_ARGS="-np 1 --oversubscribe -x MODE -x STARTED" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# step MODE SIGNAL RESTARTS: runs quorum_step in a batch-like shell, signals it once the step runs; prints rc.
step() {
  rm -f "$T/scontrol.calls" "$T/started" "$T/started.launches"
  MODE=$1 STARTED=$T/started SLURM_RESTART_COUNT=$3 bash -c "source '$ROOT/slurm/lib.sh'; quorum_step run x" \
    >"$T/log" 2>&1 &
  local pid=$!
  if [ "$2" = usr1 ]; then
    for _ in $(seq 200); do [ -e "$T/started" ] && break; sleep 0.05; done
    sleep 0.2; kill -USR1 "$pid"
  fi
  wait "$pid"
}
calls() { cat "$T/scontrol.calls" 2>/dev/null; }

step trap usr1 0; rc=$?
[ "$rc" -eq 0 ] && [ "$(calls)" = "requeue 42" ] || { cat "$T/log"; fail "trap mode: rc $rc, scontrol '$(calls)'"; }
grep -q 'SIGUSR1: forwarding' "$T/log" && grep -q 'step exited 99' "$T/log" || { cat "$T/log"; fail "no forward/99 lines"; }
pass "USR1 forwarded, step exits 99, scontrol requeue 42"
step die usr1 0; rc=$?
[ "$rc" -eq 0 ] && [ "$(calls)" = "requeue 42" ] || { cat "$T/log"; fail "die mode: rc $rc, scontrol '$(calls)'"; }
pass "a step killed by the forwarded USR1 is requeued"
step fail none 0; rc=$?
[ "$rc" -eq 3 ] && [ -z "$(calls)" ] || { cat "$T/log"; fail "fail mode: rc $rc, scontrol '$(calls)'"; }
pass "a failing step (exit 3) is not requeued and its code is kept"
step trap usr1 20; rc=$?
[ "$rc" -eq 1 ] && [ -z "$(calls)" ] && grep -q 'giving up' "$T/log" || { cat "$T/log"; fail "cap: rc $rc"; }
pass "after QUORUM_MAX_REQUEUE restarts a preempted step fails"
launches() { wc -l <"$T/started.launches"; }
step crash_once none 0; rc=$?
[ "$rc" -eq 0 ] && [ "$(launches)" -eq 2 ] && [ -z "$(calls)" ] && grep -q 'step crashed (exit 139): relaunching' "$T/log" ||
  { cat "$T/log"; fail "crash_once: rc $rc, $(launches) launches, scontrol '$(calls)'"; }
pass "a step that crashed at start (SIGSEGV) is relaunched in place once and succeeds"
step crash none 0; rc=$?
[ "$rc" -eq 139 ] && [ "$(launches)" -eq 2 ] && [ -z "$(calls)" ] ||
  { cat "$T/log"; fail "crash: rc $rc, $(launches) launches, scontrol '$(calls)'"; }
pass "a step that crashes every time is launched twice (QUORUM_STEP_RETRIES=1), fails with 139, no requeue"
echo "$PASSED passed, 0 failed"
