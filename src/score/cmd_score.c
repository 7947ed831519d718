/* cmd_score.c - `quorum score --job J [--corpus NAME]`: committee scores per pair (quorum/score.h). */
#include <string.h>

#include "quorum/cli.h"
#include "quorum/common.h"
#include "quorum/score.h"

static void score_usage(FILE *f) {
    if (quorum_rank() != 0) return;
    fprintf(f, "usage: quorum score --job J [--corpus NAME]\n\n"
           "Scores every ingested pair of the job's corpora (or only NAME) with every committee member,\n"
           "one score file per corpus x member x shard under <out_dir>/scores/. Rank 0 hands the (member,\n"
           "shard) units out to whichever rank asks, costliest first, keeping each rank on its loaded member\n"
           "(QUORUM_SCORE_SCHEDULE=static: rank r hosts member r %% N). Finished shards are skipped on a re-run.\n"
           "SIGUSR1/SIGTERM: every rank finishes its shard in flight, writes it, and exits 99 (requeue).\n");
}

int cmd_score(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { score_usage(stdout); return 0; }
    const char *job_path = NULL, *corpus = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--job") && i + 1 < argc) job_path = argv[++i];
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc) corpus = argv[++i];
        else {
            if (quorum_rank() == 0) fprintf(stderr, "quorum: error: score: unexpected argument \"%s\"\n", argv[i]);
            score_usage(stderr);
            return 2;
        }
    }
    if (!job_path) { score_usage(stderr); return 2; }
    Job job;
    if (job_load(&job, job_path) != 0) return 1;
    int rc = score_job_corpus(&job, corpus);
    return rc < 0 ? 1 : rc;
}
