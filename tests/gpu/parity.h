/* tests/gpu/parity.h - helpers shared by the CUDA parity tests: per-backend buffer arenas (so one
 * function runs an op on cpu and on cuda), random inputs, NaN poisoning and a norm-wise comparison.
 * The assertions are tests/test.h's (CHECK_NAMED, REQUIRE): parity_ops.c and parity_model.c include it
 * with TEST_EXTERN_COUNTERS and count into test_gpu_parity.c's counters. */
#ifndef QUORUM_GPU_PARITY_H
#define QUORUM_GPU_PARITY_H
#include <stddef.h>
#include "quorum/ops.h"
#include "quorum/rng.h"

/* BE[0] = backend_cpu (the reference), BE[1] = backend_cuda */
extern const Backend *BE[2];

/* Tolerances (norm-wise relative error ||got - ref|| / ||ref||): fp32 kernels vs the CPU loops differ
 * only by summation order; the bf16 GEMM path rounds inputs to 8 mantissa bits. */
#define TOL_FP32 1e-5
#define TOL_FP32_MODEL 1e-4 /* whole-model forward/backward: error compounds over layers */
#define TOL_BF16 1e-2

typedef struct {
    const Backend *be;
    void *p[64];
    int n;
} Arena;
float *a_up(Arena *a, const float *host, size_t n);   /* backend copy of host data */
int *a_up_i(Arena *a, const int *host, size_t n);
float *a_nan(Arena *a, size_t n);                    /* poisoned: every element NaN */
float *a_down(Arena *a, const float *dev, size_t n); /* new malloc'd host copy; the caller frees it */
void arena_free(Arena *a);

float *rnd(Rng *r, size_t n, float scale);            /* malloc'd N(0, scale^2) */
/* CHECKs ||got-ref||/||ref|| <= tol and that got has no NaN/Inf; prints the measured error. */
void check_close(const char *what, const float *got, const float *ref, size_t n, double tol);
/* out[i] = a[i] - b[i] into a (the increment an accumulating backward added) */
void sub_inplace(float *a, const float *b, size_t n);

void test_ops(void);      /* parity_ops.c: every Backend op */
void test_training(void); /* parity_model.c: AdamW, grad norm, DPO loss, allreduce (1 rank) */
void test_model(void);    /* parity_model.c: scoring forward and a DPO step through model.h */
#endif
