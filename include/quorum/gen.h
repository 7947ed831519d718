/*
 * quorum/gen.h - the synthetic planted-noise preference corpus used by the demo (see src/corpus/gen.c).
 */
#ifndef QUORUM_GEN_H
#define QUORUM_GEN_H

#include <stdint.h>

typedef enum { GEN_HARMLESS = 0, GEN_HELPFUL = 1 } GenSplit;

typedef struct {
    const char *out_dir;
    int64_t n_train;   /* training pairs per split (default 1000) */
    int64_t n_heldout; /* clean held-out pairs per split (default 200) */
    float flip;        /* fraction of training labels flipped (default 0.2) */
    uint64_t seed;
} GenOptions;

typedef struct {
    int64_t n_flipped[2]; /* per split */
} GenStats;

/* Writes the corpus files (see gen.c). 0 or -1 after a one-line error. Deterministic in the seed. */
int gen_corpus(const GenOptions *o, GenStats *stats);
/* Reads a .flipped file: the sorted 1-based line numbers. Caller frees. NULL after an error. */
int64_t *gen_read_flipped(const char *path, int64_t *n);

/* `quorum gen`: the synthetic planted-noise corpus (quorum/cli.h has the subcommand conventions). */
int cmd_gen(int argc, char **argv);

#endif
