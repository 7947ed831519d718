/*
 * tests/gpu/test_gpu_allreduce.c - cuda_allreduce_sum under mpirun: every rank reduces random device
 * data (more than two pipeline chunks plus a partial one) and must get exactly what MPI_Allreduce gives
 * on the same host data, identical on every rank. Run once as is and once with
 * QUORUM_CUDA_ALLREDUCE=staged. Exits 77 without a visible GPU.
 */
#include <stdlib.h>
#include <string.h>
#include <mpi.h>
#include "quorum/placement.h"
#include "quorum/common.h"
#include "quorum/cuda_backend.h"
#include "quorum/ops.h"
#include "quorum/rng.h"
#include "../test.h"

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    quorum_placement_init(); /* each rank of a node on its own GPU */
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    int local = cuda_device_count(), any;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (any == 0) {
        if (rank == 0) printf("gpu.allreduce: no CUDA device (cudaGetDeviceCount found none): skipped\n");
        MPI_Finalize();
        return 77;
    }
    REQUIRE(cuda_backend_init() >= 0);
    size_t n = ((size_t)4 << 20) * 2 + 12345; /* two full 16 MiB chunks and a partial one */
    Rng r;
    rng_seed(&r, 2024, (uint64_t)rank);
    float *h = xmalloc(n * sizeof(float)), *ref = xmalloc(n * sizeof(float)), *got = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = rng_normal(&r);
    float *d = backend_cuda.alloc(n * sizeof(float));
    backend_cuda.to_backend(d, h, n * sizeof(float));
    cuda_allreduce_sum(d, n, MPI_COMM_WORLD);
    backend_cuda.to_host(got, d, n * sizeof(float));
    MPI_Allreduce(h, ref, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("allreduce of %zu floats over %d ranks, path: %s\n", n, world,
               cuda_allreduce_is_cuda_aware() ? "CUDA-aware MPI" : "host-staged, pipelined");
    CHECK(memcmp(got, ref, n * sizeof(float)) == 0);
    uint64_t hash = fnv1a64(got, n * sizeof(float), FNV1A64_INIT), hmin, hmax;
    MPI_Allreduce(&hash, &hmin, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&hash, &hmax, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    CHECK(hmin == hmax); /* bit-identical on every rank */
    /* n = 0 and a single element go through without touching MPI buffers out of range */
    cuda_allreduce_sum(d, 0, MPI_COMM_WORLD);
    backend_cuda.to_backend(d, h, sizeof(float));
    cuda_allreduce_sum(d, 1, MPI_COMM_WORLD);
    float one;
    backend_cuda.to_host(&one, d, sizeof(float));
    CHECK(one == ref[0]);
    backend_cuda.free(d);
    free(h); free(ref); free(got);
    cuda_backend_finalize();
    int failed = t_fail_, total;
    MPI_Allreduce(&failed, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank != 0) return total ? 1 : 0;
    t_fail_ = total;
    TEST_MAIN_END();
}
