/*
 * placement.c - where a rank runs: its node-local rank (the ranks sharing its host, as MPI sees them) and
 * the accelerator that rank picks. One rule for every backend, so the multi-node rehearsal can observe
 * on a CPU machine the mapping the CUDA backend uses on GPU nodes.
 */
#include "quorum/placement.h"
#include "quorum/common.h"

#include <mpi.h>
#include <stdlib.h>
#include <unistd.h>

static int g_node_rank = -1, g_node_size = 1;

void quorum_placement_init(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized) { g_node_rank = 0; g_node_size = 1; return; }
    MPI_Comm local;
    /* MPI_COMM_TYPE_SHARED: the ranks that can share memory, i.e. this host's ranks */
    mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
    mpiCheck(MPI_Comm_rank(local, &g_node_rank));
    mpiCheck(MPI_Comm_size(local, &g_node_size));
    mpiCheck(MPI_Comm_free(&local));
}

int quorum_node_rank(int *node_size) {
    if (g_node_rank < 0) { /* a program that never called quorum_placement_init: one rank per host */
        if (node_size) *node_size = 1;
        return 0;
    }
    if (node_size) *node_size = g_node_size;
    return g_node_rank;
}

int quorum_device_for(int node_rank, int n_devices) {
    return n_devices > 0 ? node_rank % n_devices : -1;
}

void quorum_placement_report(void) {
    const char *fake = getenv("QUORUM_FAKE_GPUS_PER_NODE");
    if (!fake || !*fake) return;
    char *end;
    long gpus = strtol(fake, &end, 10);
    qCheck(*end == 0 && gpus > 0 && gpus <= 1024, "set QUORUM_FAKE_GPUS_PER_NODE to a device count (1..1024)",
           "QUORUM_FAKE_GPUS_PER_NODE=%s is not a device count", fake);
    int size, local = quorum_node_rank(&size);
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    quorum_log_all("placement: host %s, node-local rank %d of %d -> device %d of %ld (QUORUM_FAKE_GPUS_PER_NODE)",
                   host, local, size, quorum_device_for(local, (int)gpus), gpus);
}
