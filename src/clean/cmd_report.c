/* cmd_report.c - `quorum report --job J`: write <out_dir>/report/ and print the Markdown. */
#include "quorum/clean.h"
#include "quorum/common.h"
#include "quorum/job.h"

#include <stdio.h>

static void report_usage(FILE *f) {
    fprintf(f, "usage: quorum report --job JOB.json\n"
               "  Writes <out_dir>/report/report.json, report.md and PNG plots (gnuplot; set QUORUM_GNUPLOT to\n"
               "  choose the binary; without it the report has no plots) and prints report.md.\n");
}

int cmd_report(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { report_usage(stdout); return 0; }
    const char *job_file;
    int rc = clean_parse_args(argc, argv, &job_file, NULL, report_usage);
    if (rc) return rc;
    static Job job;
    if (job_load(&job, job_file)) return 1;
    if (report_job(&job)) return 1;
    if (quorum_rank() == 0) fputs(report_markdown_last(), stdout);
    return 0;
}
