/*
 * quorum/placement.h - where a rank runs (util/placement.c): one rule for every backend.
 *
 * quorum_placement_init: collective over MPI_COMM_WORLD, once, right after MPI_Init (main does it):
 * splits WORLD by host (MPI_COMM_TYPE_SHARED: the ranks that can share memory) and keeps this rank's
 * place. Doing it there, and only there, matters: a backend that initialises lazily (CUDA, inside a
 * scoring round while other ranks wait in an allreduce) must not start a collective of its own.
 * quorum_node_rank: this rank's index among its host's ranks, *node_size their count (NULL: not wanted);
 * 0 and 1 before quorum_placement_init or outside MPI.
 * quorum_device_for: the device a rank drives, node_rank % n_devices (-1 with none): one rank per GPU,
 * and the ranks of one node never share a device while there are enough.
 * quorum_placement_report: with QUORUM_FAKE_GPUS_PER_NODE=G set, every rank logs its host, node-local
 * rank and the device it would pick among G - how a CPU-only multi-node rehearsal observes the mapping
 * the CUDA backend applies (kernels/runtime.cu calls the same two functions).
 */
#ifndef QUORUM_PLACEMENT_H
#define QUORUM_PLACEMENT_H

#ifdef __cplusplus
extern "C" {
#endif

void quorum_placement_init(void);
int quorum_node_rank(int *node_size);
int quorum_device_for(int node_rank, int n_devices);
void quorum_placement_report(void);

#ifdef __cplusplus
}
#endif

#endif
