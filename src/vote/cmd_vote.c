/* cmd_vote.c - `quorum vote --job J`: agreement buckets from the score files (quorum/vote.h). */
#include <string.h>

#include "quorum/common.h"
#include "quorum/opts.h"
#include "quorum/vote.h"

static void vote_usage(FILE *f) {
    if (quorum_rank() != 0) return;
    fprintf(f, "usage: quorum vote --job J\n\n"
           "Reads the committee's score files, counts per pair the members with chosen - rejected > margin,\n"
           "merges the counts over all ranks with MPI_Allreduce and writes, per corpus,\n"
           "<out_dir>/votes/<corpus>.h5 (agree counts, buckets, every member's rewards) and\n"
           "<out_dir>/votes/<corpus>.stats.json (buckets, member accuracy, agreement, Fleiss' kappa).\n"
           "Any rank count gives the same files.\n");
}

int cmd_vote(int argc, char **argv) {
    const char *job_path = NULL;
    const Opt opts[] = {{"job", 'p', &job_path}, {0}};
    int rc = opts_command(argc, argv, opts, vote_usage);
    if (rc >= 0) return rc;
    if (!job_path) { vote_usage(stderr); return 2; }
    Job job;
    if (job_load(&job, job_path) != 0) return 1;
    return vote_job(&job) == 0 ? 0 : 1;
}
