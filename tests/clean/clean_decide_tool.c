/* clean_decide_tool.c - runs one cleaning rule on a votes file, for the Python oracle
 * (test_rules_oracle.py): clean_decide_tool VOTES.h5 METHOD SPLITS BAD_THRESHOLD P
 * SPLITS is comma-separated ("" = none). Prints the action name of every pair, one a line, in the
 * votes file's pair order. Exit 0, or 1 after one line naming what was wrong. */
#include "quorum/clean.h"
#include "quorum/common.h"
#include "quorum/vote.h"

#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: clean_decide_tool VOTES.h5 METHOD SPLITS BAD_THRESHOLD P\n");
        return 1;
    }
    Job job;
    job_defaults(&job);
    JobClean cfg = job.clean;
    if (clean_method_parse(argv[2], &cfg.method)) return quorum_input_error(argv[2], "unknown method"), 1;
    cfg.n_splits = 0;
    char *splits = xstrdup(argv[3]);
    for (char *s = strtok(splits, ","); s && cfg.n_splits < JOB_MAX_SPLITS; s = strtok(NULL, ","))
        snprintf(cfg.splits[cfg.n_splits++], sizeof cfg.splits[0], "%s", s);
    free(splits);
    cfg.bad_threshold = strtof(argv[4], NULL);
    cfg.p = strtof(argv[5], NULL);
    Votes v;
    if (votes_read(&v, argv[1])) return 1;
    uint8_t *act = xmalloc((size_t)v.n + 1);
    clean_decide(&cfg, &v, act);
    for (int64_t i = 0; i < v.n; i++) puts(clean_action_name((CleanAction)act[i]));
    free(act);
    votes_free(&v);
    return 0;
}
