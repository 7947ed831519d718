/* cmd_gen.c - `quorum gen`: write the synthetic planted-noise corpus (rank 0 writes; others wait). */
#include "quorum/common.h"
#include "quorum/gen.h"
#include "quorum/opts.h"

#include <mpi.h>

static void usage(void) {
    printf("usage: quorum gen --out DIR [--size N] [--heldout N] [--flip F] [--seed S]\n"
           "  Writes harmless.jsonl / helpful.jsonl (HH transcripts, N pairs each, a fraction F of labels\n"
           "  flipped; default N=1000, F=0.2), their .flipped line lists, and clean heldout-*.jsonl.\n");
}

int cmd_gen(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(); return 0; }
    GenOptions o = {.out_dir = NULL, .n_train = 1000, .n_heldout = 200, .flip = 0.2f, .seed = 1};
    const Opt opts[] = {{"out", 'p', &o.out_dir}, {"size", 'I', &o.n_train}, {"heldout", 'I', &o.n_heldout},
                        {"flip", 'f', &o.flip}, {"seed", 'u', &o.seed}, {0}};
    if (opts_parse(argv[0], argc, argv, opts)) { usage(); return 2; }
    if (!o.out_dir || o.n_train < 1 || o.n_heldout < 0 || o.flip < 0 || o.flip > 1) { usage(); return 2; }
    int rc = 0;
    if (quorum_rank() == 0) {
        GenStats st;
        rc = gen_corpus(&o, &st) ? 1 : 0;
        if (!rc)
            quorum_log("gen: %s: %lld pairs per split, flipped harmless %lld, helpful %lld", o.out_dir,
                       (long long)o.n_train, (long long)st.n_flipped[0], (long long)st.n_flipped[1]);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return rc;
}
