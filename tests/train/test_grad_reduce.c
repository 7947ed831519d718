/* test_grad_reduce.c - train_ops_cpu.grads_allreduce under mpirun, for ref_grad_reduce.py: every rank fills n
 * gradients from its own seeded stream (magnitudes over six decades, so bf16 rounding bites), writes them to
 * OUT/in_<rank>.bin, reduces them with the given wire dtype and bucket size, and writes the result to
 * OUT/out_<rank>.bin and the returned norm to OUT/norm_<rank>.txt (%.17g).
 * usage: test_grad_reduce OUT N BUCKET fp32|bf16 */
#include "quorum/common.h"
#include "quorum/rng.h"
#include "quorum/train.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void write_floats(const char *out, const char *what, int rank, const float *x, size_t n) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s_%d.bin", out, what, rank);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(x, sizeof(float), n, f) != n) quorum_die_at(__FILE__, __LINE__, "check the folder", "cannot write %s", path);
    fclose(f);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc != 5) {
        fprintf(stderr, "usage: test_grad_reduce OUT N BUCKET fp32|bf16\n");
        MPI_Finalize();
        return 2;
    }
    const char *out = argv[1];
    size_t n = (size_t)atoll(argv[2]), bucket = (size_t)atoll(argv[3]);
    DType wire = !strcmp(argv[4], "bf16") ? DT_BF16 : DT_F32;
    int rank = quorum_rank();
    float *g = xmalloc(n * sizeof(float));
    Rng r;
    rng_seed(&r, 77, (uint64_t)rank);
    for (size_t i = 0; i < n; i++) g[i] = (float)((2 * rng_uniform(&r) - 1) * pow(10.0, 6 * rng_uniform(&r) - 3));
    write_floats(out, "in", rank, g, n);
    double norm = train_ops_cpu.grads_allreduce(g, n, bucket, wire);
    write_floats(out, "out", rank, g, n);
    char path[2048];
    snprintf(path, sizeof path, "%s/norm_%d.txt", out, rank);
    FILE *f = fopen(path, "w");
    if (f) fprintf(f, "%.17g\n", norm), fclose(f);
    free(g);
    MPI_Finalize();
    return 0;
}
