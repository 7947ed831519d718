/* score_vote_once.c - `quorum score` then `quorum vote` in one MPI job (what cmd_score and cmd_vote
 * call), so the N x R grid of run_hh.py pays one mpirun start-up per cell, not two.
 * usage: score_vote_once JOB.json ; exit code as quorum's. */
#include <mpi.h>
#include <stdio.h>

#include "quorum/common.h"
#include "quorum/score.h"
#include "quorum/vote.h"

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided); /* as quorum's main */
    Job job;
    int rc = argc == 2 ? 0 : 2;
    if (rc == 0 && job_load(&job, argv[1]) != 0) rc = 1;
    if (rc == 0) rc = score_job(&job) == 0 ? 0 : 1;
    if (rc == 0) rc = vote_job(&job) == 0 ? 0 : 1;
    MPI_Finalize();
    return rc;
}
