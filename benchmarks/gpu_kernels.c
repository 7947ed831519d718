/*
 * benchmarks/gpu_kernels.c - times every backend_cuda op at GPT-2-small training shapes (B=8, T=512,
 * C=768, 12 heads, V=50257) and the GEMMs against a bare cuBLAS call of the same shape (the best this
 * library does), fp32 and bf16. Prints one line per op: ms, and GFLOP/s or GB/s. Run via
 * benchmarks/gpu_kernels.sh on a GPU machine. Inputs are random; nothing is checked here (that is
 * tests/gpu).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include "quorum/placement.h"
#include "quorum/common.h"
#include "quorum/cuda_backend.h"
#include "quorum/ops.h"
#include "quorum/rng.h"

cudaStream_t cuda_stream(void); /* kernels/runtime.cu: the stream every backend op runs on */

enum { B = 8, T = 512, C = 768, NH = 12, HD = 64, V = 50257, F = 3072, M = 2048 };
static const Backend *be = &backend_cuda;
static Rng R;

static float *dev_random(size_t n, float scale) {
    float *h = xmalloc(n * sizeof(float)), *d = be->alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = scale * rng_normal(&R);
    be->to_backend(d, h, n * sizeof(float));
    free(h);
    return d;
}
static int *dev_ints(size_t n, int below) {
    int *h = xmalloc(n * sizeof(int)), *d = be->alloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++) h[i] = (int)rng_below(&R, below);
    be->to_backend(d, h, n * sizeof(int));
    free(h);
    return d;
}

/* All buffers of the benchmark, sized for the largest use. */
static struct {
    float *x, *y, *w, *bias, *dx, *dw, *db, *mean, *rstd, *qkv, *dqkv, *att, *datt, *logits, *lse, *logp, *dlogp;
    float *cosb, *sinb, *wte, *wpe, *m, *v;
    int *ids, *lens, *targets, *rows;
    size_t nparams;
} S;

typedef void (*OpFn)(void);
/* Runs fn 3 times to warm up, then `reps` times between CUDA events; returns ms per call. */
static double time_ms(OpFn fn, int reps) {
    for (int i = 0; i < 3; i++) fn();
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaEventRecord(a, cuda_stream());
    for (int i = 0; i < reps; i++) fn();
    cudaEventRecord(b, cuda_stream());
    cudaDeviceSynchronize();
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms / reps;
}
static void report(const char *name, OpFn fn, double flops, double bytes) {
    double ms = time_ms(fn, 20);
    printf("%-28s %9.3f ms", name, ms);
    if (flops > 0) printf("  %8.1f GFLOP/s", flops / ms / 1e6);
    if (bytes > 0) printf("  %8.1f GB/s", bytes / ms / 1e6);
    printf("\n");
}

static const int N = B * T;
static void op_matmul_fwd(void) { be->matmul_forward(S.y, S.x, S.w, S.bias, N, C, 3 * C); }
static void op_matmul_bwd(void) { be->matmul_backward(S.dx, S.dw, S.db, S.y, S.x, S.w, N, C, 3 * C); }
static void op_lmhead_fwd(void) { be->matmul_forward(S.logits, S.x, S.wte, NULL, M, C, V); }
static void op_cublas_sgemm(void) { /* the same GEMM as op_matmul_fwd without bias: cuBLAS alone */
    static cublasHandle_t h;
    float one = 1, zero = 0;
    if (!h) {
        cublasCreate(&h);
        cublasSetStream(h, cuda_stream()); /* the backend's stream, so the events time it the same way */
    }
    cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 3 * C, N, C, &one, S.w, C, S.x, C, &zero, S.y, 3 * C);
}
static void op_layernorm_fwd(void) { be->layernorm_forward(S.y, S.mean, S.rstd, S.x, S.w, S.bias, N, C, 1e-5f); }
static void op_layernorm_bwd(void) { be->layernorm_backward(S.dx, S.dw, S.db, S.y, S.x, S.w, S.mean, S.rstd, N, C); }
static void op_rmsnorm_fwd(void) { be->rmsnorm_forward(S.y, S.rstd, S.x, S.w, N, C, 1e-6f); }
static void op_rmsnorm_bwd(void) { be->rmsnorm_backward(S.dx, S.dw, S.y, S.x, S.w, S.rstd, N, C); }
static void op_gelu_fwd(void) { be->gelu_forward(S.y, S.x, N * F); }
static void op_gelu_bwd(void) { be->gelu_backward(S.dx, S.x, S.y, N * F); }
static void op_swiglu_fwd(void) { be->swiglu_forward(S.y, S.x, N, F); }
static void op_swiglu_bwd(void) { be->swiglu_backward(S.dx, S.y, S.x, N, F); }
static void op_residual_fwd(void) { be->residual_forward(S.y, S.x, S.dx, N * C); }
static void op_rope_fwd(void) { be->rope_forward(S.qkv, S.cosb, S.sinb, B, T, NH, NH, HD); }
static void op_attention_fwd(void) { be->attention_forward(S.y, S.att, S.qkv, S.lens, B, T, NH, NH, HD); }
static void op_attention_bwd(void) { be->attention_backward(S.dqkv, S.datt, S.y, S.qkv, S.att, S.lens, B, T, NH, NH, HD); }
static void op_embedding_fwd(void) { be->embedding_forward(S.y, S.ids, S.wte, S.wpe, B, T, C); }
static void op_embedding_bwd(void) { be->embedding_backward(S.dw, S.db, S.y, S.ids, B, T, C); }
static void op_gather_fwd(void) { be->gather_forward(S.y, S.x, S.rows, M, C); }
static void op_logprob_fwd(void) { be->logprob_forward(S.logp, S.lse, S.logits, S.targets, M, V); }
static void op_logprob_bwd(void) { be->logprob_backward(S.logits, S.dlogp, S.logits, S.lse, S.targets, M, V); }
static void op_adamw(void) { cuda_adamw_step(S.wte, S.dw, S.m, S.v, S.nparams, 1, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f); }
static void op_grad_norm(void) { (void)cuda_grad_norm(S.dw, S.nparams); }

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    quorum_placement_init(); /* each rank of a node on its own GPU */
    if (cuda_device_count() == 0) {
        printf("gpu_kernels: no CUDA device: nothing to time\n");
        MPI_Finalize();
        return 77;
    }
    cuda_backend_init();
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    printf("device: %s, %d SMs; shapes B=%d T=%d C=%d NH=%d V=%d (GPT-2 small)\n", prop.name,
           prop.multiProcessorCount, B, T, C, NH, V);
    rng_seed(&R, 1, 0);
    size_t big = (size_t)N * F * 2; /* the widest activation (swiglu input) */
    S.x = dev_random(big, 1); S.y = dev_random(big, 1); S.dx = dev_random(big, 1);
    S.nparams = (size_t)V * C; /* wte-sized parameter block for AdamW / grad norm (38.6M) */
    S.w = dev_random((size_t)3 * C * C, 0.02f); S.bias = dev_random(3 * C, 0.02f);
    S.dw = dev_random(S.nparams, 1e-3f); S.db = dev_random((size_t)T * C, 1e-3f);
    S.mean = dev_random(N, 1); S.rstd = dev_random(N, 1);
    S.qkv = dev_random((size_t)N * 3 * C, 1); S.dqkv = dev_random((size_t)N * 3 * C, 1);
    S.att = dev_random((size_t)B * NH * T * T, 1); S.datt = dev_random((size_t)B * NH * T * T, 1);
    S.logits = dev_random((size_t)M * V, 2); S.lse = dev_random(M, 1); S.logp = dev_random(M, 1);
    S.dlogp = dev_random(M, 1);
    S.cosb = dev_random((size_t)T * HD / 2, 1); S.sinb = dev_random((size_t)T * HD / 2, 1);
    S.wte = dev_random(S.nparams, 0.02f); S.wpe = dev_random((size_t)T * C, 0.02f);
    S.m = dev_random(S.nparams, 1e-3f); S.v = dev_random(S.nparams, 1e-3f);
    S.ids = dev_ints((size_t)N, V); S.targets = dev_ints(M, V);
    int *lens_h = xmalloc(sizeof(int) * B), *rows_h = xmalloc(sizeof(int) * M);
    for (int b = 0; b < B; b++) lens_h[b] = T - b * 37;
    for (int i = 0; i < M; i++) rows_h[i] = 2 * i;
    S.lens = be->alloc(sizeof(int) * B); be->to_backend(S.lens, lens_h, sizeof(int) * B);
    S.rows = be->alloc(sizeof(int) * M); be->to_backend(S.rows, rows_h, sizeof(int) * M);

    double gemm = 2.0 * N * C * 3 * C, f4 = sizeof(float);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        cuda_matmul_use_bf16(bf16);
        printf("-- GEMMs (%s)\n", bf16 ? "bf16 inputs, fp32 accumulate" : "fp32");
        report("matmul_fwd N,768->2304", op_matmul_fwd, gemm, 0);
        report("matmul_bwd (dinp+dW+db)", op_matmul_bwd, 2 * gemm, 0);
        report("lm head M=2048 768->50257", op_lmhead_fwd, 2.0 * M * C * V, 0);
        report("attention_fwd (GEMMs+softmax)", op_attention_fwd, 4.0 * B * NH * T * T * HD, 0);
        report("attention_bwd", op_attention_bwd, 8.0 * B * NH * T * T * HD, 0);
    }
    cuda_matmul_use_bf16(0);
    report("cublasSgemm alone (peak ref)", op_cublas_sgemm, gemm, 0);
    printf("-- memory-bound kernels\n");
    report("layernorm_fwd", op_layernorm_fwd, 0, 2.0 * N * C * f4);
    report("layernorm_bwd", op_layernorm_bwd, 0, 4.0 * N * C * f4);
    report("rmsnorm_fwd", op_rmsnorm_fwd, 0, 2.0 * N * C * f4);
    report("rmsnorm_bwd", op_rmsnorm_bwd, 0, 4.0 * N * C * f4);
    report("gelu_fwd", op_gelu_fwd, 0, 2.0 * N * F * f4);
    report("gelu_bwd", op_gelu_bwd, 0, 4.0 * N * F * f4);
    report("swiglu_fwd", op_swiglu_fwd, 0, 3.0 * N * F * f4);
    report("swiglu_bwd", op_swiglu_bwd, 0, 7.0 * N * F * f4);
    report("residual_fwd", op_residual_fwd, 0, 3.0 * N * C * f4);
    report("rope_fwd", op_rope_fwd, 0, 2.0 * N * 2 * C * f4);
    report("embedding_fwd", op_embedding_fwd, 0, 3.0 * N * C * f4);
    report("embedding_bwd (deterministic)", op_embedding_bwd, 0, 2.0 * N * C * f4);
    report("gather_fwd M=2048", op_gather_fwd, 0, 2.0 * M * C * f4);
    report("logprob_fwd M=2048 V=50257", op_logprob_fwd, 0, 1.0 * M * V * f4);
    report("logprob_bwd (in place)", op_logprob_bwd, 0, 2.0 * M * V * f4);
    report("adamw 38.6M params", op_adamw, 0, 7.0 * S.nparams * f4);
    report("grad_norm 38.6M", op_grad_norm, 0, 1.0 * S.nparams * f4);
    cuda_backend_finalize();
    MPI_Finalize();
    return 0;
}
