/* main.c - the `quorum` binary: MPI set-up, SLURM sanity check, subcommand dispatch. */
#include "quorum/cli.h"
#include "quorum/common.h"
#include "quorum/placement.h"
#include "quorum/train.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} Command;

static const Command COMMANDS[] = {
    {"demo", cmd_demo, "the planted-noise experiment end to end: committee cleaning, then DPO (the default demo)"},
    {"run", cmd_run, "ingest -> score -> vote -> clean (-> dpo) for a job file, in one MPI job"},
    {"ingest", cmd_ingest, "read preference corpora (.jsonl/.jsonl.gz) into sharded HDF5"},
    {"export", cmd_export, "write ingested or cleaned shards back out as JSONL"},
    {"tokenize", cmd_tokenize, "encode/decode text with a Hugging Face tokenizer.json"},
    {"score", cmd_score, "score every pair with every committee member (units handed out over the ranks)"},
    {"vote", cmd_vote, "merge member votes with MPI_Allreduce into agreement buckets"},
    {"clean", cmd_clean, "Source-Aware Cleaning and the vote/margin cleaning family, with a ledger"},
    {"report", cmd_report, "bucket, accuracy, agreement and margin report (JSON, Markdown, PNG)"},
    {"dpo", cmd_dpo, "data-parallel DPO training of a causal LM policy"},
    {"rm-train", cmd_rm_train, "Bradley-Terry reward-model training"},
    {"init-model", cmd_init_model, "write a small random-init HF checkpoint (GPT-2, Llama, Qwen3, Gemma-2; LM, score or MLP head)"},
    {"verify", cmd_verify, "check an output directory against its inputs and ledgers"},
    {"gen", cmd_gen, "generate the synthetic planted-noise corpus used by the demo"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f) {
    fprintf(f, "usage: quorum <command> [options]   (quorum <command> --help for each)\n\ncommands:\n");
    for (const Command *c = COMMANDS; c->name; c++) fprintf(f, "  %-9s %s\n", c->name, c->help);
}

/* Under SLURM, N tasks launched without a working PMI each see "rank 0 of 1" and would all do the
 * whole job. Refuse that: the world size must match SLURM_NTASKS when both are known. */
static void check_slurm_world(void) {
    const char *nt = getenv("SLURM_NTASKS");
    const char *step = getenv("SLURM_STEP_ID");
    if (!nt || !step) return; /* not inside a job step (e.g. the batch script itself) */
    int ntasks = atoi(nt), world = quorum_world();
    qCheck(ntasks <= 0 || world == ntasks, "launch with mpirun or srun --mpi=pmix so the ranks see each other",
           "SLURM_NTASKS=%d but MPI world size is %d: the tasks are independent copies", ntasks, world);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    const Command *cmd = COMMANDS;
    while (cmd->name && strcmp(cmd->name, argv[1]) != 0) cmd++;
    if (!cmd->name) {
        fprintf(stderr, "quorum: error: unknown command \"%s\"\n", argv[1]);
        usage(stderr);
        return 2;
    }
    /* MPI_THREAD_MULTIPLE: the score stage's dispatcher thread on rank 0 (quorum/score.h); with less, score
     * falls back to the static schedule and says so. */
    int provided = MPI_THREAD_SINGLE;
    mpiCheck(MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided));
    setvbuf(stderr, NULL, _IOLBF, 0);
    check_slurm_world();
    quorum_placement_init();
    quorum_placement_report();
    int rc = cmd->fn(argc - 1, argv + 1);
    /* A rank that fails must not leave the others waiting in a collective forever. */
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc ? rc : (any ? 1 : 0);
}
