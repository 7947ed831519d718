/* cmd_clean.c - `quorum clean --job J [--method M]`: apply a cleaning method to every voted corpus. */
#include "quorum/clean.h"
#include "quorum/common.h"
#include "quorum/job.h"
#include "quorum/opts.h"

#include <stdio.h>
#include <string.h>

static void clean_usage(FILE *f) {
    fprintf(f,
            "usage: quorum clean --job JOB.json [--method METHOD]\n"
            "  Cleans every corpus of the job from its ingested shards and votes file.\n"
            "  METHOD: none | sac | vote_all_remove | vote_all_flip | vote_maj_remove | vote_maj_flip |\n"
            "          margin_remove | margin_flip | ifd_r | ifd_gap_r | ifd_gap_f | rw_gap_r | rw_gap_f |\n"
            "          llm_judge_r | llm_judge_f | consensus_r | consensus_f |\n"
            "          all (every method the committee's member kinds allow,\n"
            "          one folder each)\n"
            "          (default: the job's clean.method)\n"
            "  Output: <out_dir>/cleaned/<corpus>/, or <out_dir>/cleaned-<METHOD>/<corpus>/ with --method:\n"
            "          shard-*.h5 + manifest.json (a corpus), cleaned.jsonl, actions.jsonl, ledger.json\n");
}

/* Parses "--job J" and, when method is non-NULL, "--method M". 0, or 2 (usage) after a message. */
int clean_parse_args(int argc, char **argv, const char **job, const char **method, void (*usage)(FILE *)) {
    *job = NULL;
    if (method) *method = NULL;
    const Opt opts[] = {{"job", 'p', job}, {method ? "method" : NULL, 'p', method}, {0}};
    if (opts_parse(argv[0], argc, argv, opts)) { usage(stderr); return 2; }
    if (!*job) {
        fprintf(stderr, "quorum: error: %s: --job is required\n", argv[0]);
        usage(stderr);
        return 2;
    }
    return 0;
}

int cmd_clean(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { clean_usage(stdout); return 0; }
    const char *job_file, *method;
    int rc = clean_parse_args(argc, argv, &job_file, &method, clean_usage);
    if (rc) return rc;
    static Job job;
    if (job_load(&job, job_file)) return 1;
    return clean_job_method(&job, method) ? 1 : 0;
}
