/*
 * quorum/placement.h - where a rank runs (util/placement.c): one rule for every backend.
 *
 * quorum_node_rank: this rank's index among the ranks of `comm` on its host (MPI_COMM_TYPE_SHARED: the
 * ranks that can share memory), *node_size their count (NULL: not wanted); 0 and 1 outside MPI.
 * quorum_device_for: the device a rank drives, node_rank % n_devices (-1 with none): one rank per GPU,
 * and the ranks of one node never share a device while there are enough.
 * quorum_placement_report: with QUORUM_FAKE_GPUS_PER_NODE=G set, every rank logs its host, node-local
 * rank and the device it would pick among G - how a CPU-only multi-node rehearsal observes the mapping
 * the CUDA backend applies (kernels/runtime.cu calls the same two functions). Collective over WORLD.
 */
#ifndef QUORUM_PLACEMENT_H
#define QUORUM_PLACEMENT_H

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

int quorum_node_rank(MPI_Comm comm, int *node_size);
int quorum_device_for(int node_rank, int n_devices);
void quorum_placement_report(void);

#ifdef __cplusplus
}
#endif

#endif
