/*
 * quorum/opts.h - table-driven command-line options, the one parser behind every subcommand.
 *
 * A subcommand lists its options as an Opt table ending in {0}; opts_parse fills the pointed-to fields
 * from "--name VALUE" (or "--flag") pairs, and opts_usage prints the table under a synopsis, so the
 * parser and the --help text cannot disagree. Usage errors are one line, printed by rank 0 (every
 * rank parses the same argv and reaches the same answer):
 *   quorum: error: score: unknown option "--jbo" (see --help)
 *   quorum: error: dpo: --beta: bad value "x"
 */
#ifndef QUORUM_OPTS_H
#define QUORUM_OPTS_H

#include <stddef.h>
#include <stdio.h>

/* Types: 'i' int, 'f' float, 'u' uint64_t, 'I' int64_t, 's' string copied into `size` bytes,
 * 'p' const char * pointing into argv, 'b' flag (sets int 1, takes no value). */
typedef struct {
    const char *name; /* without the leading "--" */
    char type;
    void *ptr;
    size_t size;      /* 's' only */
    const char *help;
} Opt;

/* 0, or 2 (the usage exit code) after printing one line naming the bad option. `cmd` names the
 * subcommand in the message (argv[0]). */
int opts_parse(const char *cmd, int argc, char **argv, const Opt *opts);
/* The start of a subcommand: -h/--help prints usage(stdout) and returns 0; a bad option prints its line
 * and usage(stderr) and returns 2; -1 when the options parsed and the subcommand goes on:
 *   int rc = opts_command(argc, argv, opts, usage); if (rc >= 0) return rc; */
int opts_command(int argc, char **argv, const Opt *opts, void (*usage)(FILE *));
/* The same with --help printed from the table (opts_usage under `synopsis`); a bad option prints its
 * line only (the table is long; the line says "see --help"). */
int opts_command_table(int argc, char **argv, const Opt *opts, const char *synopsis);
/* "<synopsis>\n\noptions:\n  --name N   help" for every option. */
void opts_usage(FILE *f, const char *synopsis, const Opt *opts);

#endif /* QUORUM_OPTS_H */
