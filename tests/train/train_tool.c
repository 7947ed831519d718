/* train_tool.c - the train stage's three commands (the same functions `quorum` dispatches to) as a small
 * stand-alone binary for the train tests: train_tool init-model|dpo|rm-train [options]. */
#include "quorum/common.h"
#include "quorum/train.h"

#include <mpi.h>
#include <string.h>

/* main.c's, which this binary does not link */
int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: train_tool init-model|dpo|rm-train [options]\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    int rc = !strcmp(argv[1], "init-model") ? cmd_init_model(argc - 1, argv + 1)
           : !strcmp(argv[1], "dpo")        ? cmd_dpo(argc - 1, argv + 1)
           : !strcmp(argv[1], "rm-train")   ? cmd_rm_train(argc - 1, argv + 1)
                                            : 2;
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc ? rc : any ? 1 : 0;
}
