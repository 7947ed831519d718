/* opts.c - table-driven --option parsing shared by every subcommand (see quorum/opts.h). */
#include "quorum/opts.h"
#include "quorum/common.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int set(const Opt *o, const char *v, const char *cmd) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case 'i': { long x = strtol(v, &end, 10); *(int *)o->ptr = (int)x; break; }
    case 'u': { unsigned long long x = strtoull(v, &end, 10); *(uint64_t *)o->ptr = x; break; }
    case 'I': { long long x = strtoll(v, &end, 10); *(int64_t *)o->ptr = x; break; }
    case 'f': { float x = strtof(v, &end); *(float *)o->ptr = x; break; }
    case 'p': *(const char **)o->ptr = v; return 0;
    case 's':
        if (strlen(v) >= o->size) goto bad;
        snprintf((char *)o->ptr, o->size, "%s", v);
        return 0;
    }
    if (!*v || *end || errno) goto bad;
    return 0;
bad:
    if (quorum_rank() == 0) fprintf(stderr, "quorum: error: %s: --%s: bad value \"%s\"\n", cmd, o->name, v);
    return 2;
}

int opts_parse(const char *cmd, int argc, char **argv, const Opt *opts) {
    for (int i = 1; i < argc; i++) {
        const Opt *o = NULL;
        if (!strncmp(argv[i], "--", 2))
            for (const Opt *p = opts; p->name; p++)
                if (!strcmp(argv[i] + 2, p->name)) o = p;
        if (!o) {
            if (quorum_rank() == 0) fprintf(stderr, "quorum: error: %s: unknown option \"%s\" (see --help)\n", cmd, argv[i]);
            return 2;
        }
        if (o->type == 'b') { *(int *)o->ptr = 1; continue; }
        if (i + 1 >= argc) {
            if (quorum_rank() == 0) fprintf(stderr, "quorum: error: %s: --%s needs a value\n", cmd, o->name);
            return 2;
        }
        if (set(o, argv[++i], cmd)) return 2;
    }
    return 0;
}

int opts_command(int argc, char **argv, const Opt *opts, void (*usage)(FILE *)) {
    if (cli_wants_help(argc, argv)) { usage(stdout); return 0; }
    if (opts_parse(argv[0], argc, argv, opts)) { usage(stderr); return 2; }
    return -1;
}

int opts_command_table(int argc, char **argv, const Opt *opts, const char *synopsis) {
    if (cli_wants_help(argc, argv)) { opts_usage(stdout, synopsis, opts); return 0; }
    return opts_parse(argv[0], argc, argv, opts) ? 2 : -1; /* the table is long: the line says "see --help" */
}

void opts_usage(FILE *f, const char *synopsis, const Opt *opts) {
    fprintf(f, "%s\n\noptions:\n", synopsis);
    for (const Opt *p = opts; p->name; p++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", p->name, p->type == 'b' ? "" : p->type == 's' || p->type == 'p' ? " S" : " N");
        fprintf(f, "  %-24s %s\n", left, p->help);
    }
}
