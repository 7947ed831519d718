/*
 * tests/gpu/test_gpu_parity.c - backend_cuda vs backend_cpu, op by op and through the model API.
 * Exits 77 (ctest SKIP) when cudaGetDeviceCount finds no device, so it compiles and links everywhere
 * CUDA is built but only runs on a GPU machine.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>
#include "quorum/placement.h"
#include "quorum/cuda_backend.h"
#include "quorum/common.h"
#include "../test.h"
#include "parity.h"

const Backend *BE[2] = {&backend_cpu, &backend_cuda};

static void *arena_keep(Arena *a, void *p) {
    if (a->n == (int)(sizeof a->p / sizeof a->p[0])) { fprintf(stderr, "arena full\n"); exit(1); }
    return a->p[a->n++] = p;
}
float *a_up(Arena *a, const float *host, size_t n) {
    float *d = arena_keep(a, a->be->alloc(n * sizeof(float)));
    a->be->to_backend(d, host, n * sizeof(float));
    return d;
}
int *a_up_i(Arena *a, const int *host, size_t n) {
    int *d = arena_keep(a, a->be->alloc(n * sizeof(int)));
    a->be->to_backend(d, host, n * sizeof(int));
    return d;
}
float *a_nan(Arena *a, size_t n) {
    float *h = xmalloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    float *d = a_up(a, h, n);
    free(h);
    return d;
}
float *a_down(Arena *a, const float *dev, size_t n) {
    float *h = xmalloc(n * sizeof(float) + 1);
    a->be->to_host(h, dev, n * sizeof(float));
    return h;
}
void arena_free(Arena *a) {
    for (int i = 0; i < a->n; i++) a->be->free(a->p[i]);
    a->n = 0;
}

float *rnd(Rng *r, size_t n, float scale) {
    float *x = xmalloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(r);
    return x;
}

void check_close(const char *what, const float *got, const float *ref, size_t n, double tol) {
    double num = 0.0, den = 0.0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) bad++;
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    printf("  %-34s n=%-8zu rel.err %.2e (tol %.0e)%s\n", what, n, rel, tol, bad ? "  NON-FINITE" : "");
    CHECKF(bad == 0 && rel <= tol && den > 0, "%s: rel.err %.3e, %zu non-finite, |ref|^2 %.3e", what, rel, bad, den);
}

void sub_inplace(float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] -= b[i];
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--probe")) /* for scripts: 0 with a device, 77 without */
        return cuda_device_count() > 0 ? 0 : 77;
    MPI_Init(&argc, &argv);
    quorum_placement_init(); /* each rank of a node on its own GPU */
    if (cuda_device_count() == 0) {
        printf("gpu.parity: no CUDA device (cudaGetDeviceCount found none): skipped\n");
        MPI_Finalize();
        return 77;
    }
    REQUIRE(cuda_backend_init() >= 0);
    test_ops();
    test_training();
    test_model();
    cuda_backend_finalize();
    MPI_Finalize();
    TEST_MAIN_END();
}
