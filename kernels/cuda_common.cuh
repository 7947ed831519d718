/*
 * kernels/cuda_common.cuh - what every .cu file of the CUDA backend shares: the two check macros,
 * launch-size helpers, warp/block reductions and the process-wide cuBLAS handle and stream.
 *
 * Everything runs on ONE stream (cuda_stream()) so kernels and cuBLAS calls are ordered without
 * explicit events; host code that reads results synchronises that stream. Reductions are written to
 * be deterministic: a fixed grid, a fixed order of partial sums, no atomics on floats.
 */
#ifndef QUORUM_CUDA_COMMON_CUH
#define QUORUM_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <float.h>
#include "quorum/common.h"

/* cudaCheck(cudaXxx(...)): file:line of the quorum source, CUDA's own message, a hint; aborts the job. */
#define cudaCheck(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) \
    quorum_die_at(__FILE__, __LINE__, "check the GPU is visible (nvidia-smi, CUDA_VISIBLE_DEVICES) and has free memory", \
                  "CUDA failed: %s (%s)", cudaGetErrorString(e_), cudaGetErrorName(e_)); } while (0)

/* cublasCheck(cublasXxx(...)): same, with cuBLAS's status string. */
#define cublasCheck(call) do { cublasStatus_t s_ = (call); if (s_ != CUBLAS_STATUS_SUCCESS) \
    quorum_die_at(__FILE__, __LINE__, "check matrix shapes and that the cuBLAS library matches the driver", \
                  "cuBLAS failed: %s (%s)", cublasGetStatusString(s_), cublasGetStatusName(s_)); } while (0)

/* After every kernel launch: catches bad launch configurations at the call site. */
#define cudaCheckLaunch() cudaCheck(cudaGetLastError())

static inline int ceil_div(long long a, long long b) { return (int)((a + b - 1) / b); }

/* The stream and cuBLAS handle of this process (created by cuda_backend_init, lazily otherwise). */
extern "C" cudaStream_t cuda_stream(void);
cublasHandle_t cuda_cublas(void);

/* Sum / max over a warp; every lane gets the result. */
__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

/* Sum over a block of blockDim.x threads (a multiple of 32, <= 1024); every thread gets the result.
 * `shared` must hold 32 floats. The order of additions is fixed, so the result is deterministic. */
__device__ __forceinline__ float block_sum(float x, float *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    x = warp_sum(x);
    __syncthreads(); /* shared may still be read by a previous call */
    if (lane == 0) shared[warp] = x;
    __syncthreads();
    x = lane < nwarps ? shared[lane] : 0.0f;
    return warp_sum(x);
}

/* Merges two online-softmax states (max m, sum of exp(x - m) s) into (m, s). */
__device__ __forceinline__ void softmax_merge(float &m, float &s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    if (mn == -INFINITY) return; /* both empty */
    s = s * expf(m - mn) + s2 * expf(m2 - mn);
    m = mn;
}

/* Block-wide online-softmax reduction of (m, s); every thread gets the merged state. */
__device__ __forceinline__ void block_softmax_state(float &m, float &s, float *shm /*[32]*/, float *shs /*[32]*/) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    for (int o = 16; o > 0; o >>= 1)
        softmax_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    __syncthreads();
    if (lane == 0) { shm[warp] = m; shs[warp] = s; }
    __syncthreads();
    m = lane < nwarps ? shm[lane] : -INFINITY;
    s = lane < nwarps ? shs[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        softmax_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

/* A grow-only device scratch buffer per slot (attention permutes, reduction partials). Contents are
 * undefined on return; growing synchronises the device. Slots keep callers from clobbering each other. */
enum { SCRATCH_ATTN = 0, SCRATCH_ATTN_GRAD, SCRATCH_PARTIALS, SCRATCH_REDUCE, SCRATCH_ATTN_SCORES, SCRATCH_BF16,
       SCRATCH_COUNT };
float *cuda_scratch(int slot, size_t bytes);
void cuda_scratch_release(void); /* frees every slot (cuda_backend_finalize) */
void cuda_lt_release(void);      /* matmul_lt.cu: cuBLASLt handle, workspace and plans (cuda_backend_finalize) */

/* Row-major GEMM on the process handle: C = alpha op(A) op(B) + beta C for `batch` matrices at the given
 * element strides (0 = shared). op(A) is (M,K), op(B) (K,N), C (M,N); lda/ldb/ldc are row strides.
 * fp32 compute, or bf16 inputs with fp32 accumulation after cuda_matmul_use_bf16(1). */
void gemm_rowmajor(bool transA, bool transB, int M, int N, int K, float alpha,
                   const float *A, int lda, long long strideA, const float *B, int ldb, long long strideB,
                   float beta, float *C, int ldc, long long strideC, int batch);

/* Deterministic column sums of a per-element term over N rows: out_a[c] += sum_n a(n,c) and, when
 * out_b != NULL, out_b[c] += sum_n b(n,c). Term is a functor `void operator()(int n, int c, float &a,
 * float &b) const`. Two stages: (row-chunk, column) partials in fixed order, then a sum over chunks. */
#define COLSUM_ROWS_PER_CHUNK 256
#define COLSUM_TILE 32
#define COLSUM_THREADS_Y 8
template <typename Term>
__global__ void colsum_partial_kernel(float *partial_a, float *partial_b, /* (nchunks,C) each */
                                      int N, int C, Term term) {
    __shared__ float sa[COLSUM_THREADS_Y][COLSUM_TILE], sb[COLSUM_THREADS_Y][COLSUM_TILE];
    int c = blockIdx.x * COLSUM_TILE + threadIdx.x, chunk = blockIdx.y;
    int n0 = chunk * COLSUM_ROWS_PER_CHUNK, n1 = min(N, n0 + COLSUM_ROWS_PER_CHUNK);
    float a = 0.0f, b = 0.0f;
    if (c < C)
        for (int n = n0 + threadIdx.y; n < n1; n += COLSUM_THREADS_Y) {
            float ta = 0.0f, tb = 0.0f;
            term(n, c, ta, tb);
            a += ta; b += tb;
        }
    sa[threadIdx.y][threadIdx.x] = a;
    sb[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int y = 1; y < COLSUM_THREADS_Y; y++) { a += sa[y][threadIdx.x]; b += sb[y][threadIdx.x]; }
        partial_a[(size_t)chunk * C + c] = a;
        partial_b[(size_t)chunk * C + c] = b;
    }
}
/* partial_a/b: (nchunks,C) -> out_a/out_b: (C) +=, chunks summed in order. static: each .cu file that
 * uses colsum_accumulate launches its own copy (no cross-file kernel launch without -rdc). */
static __global__ void colsum_finish_kernel(float *out_a, float *out_b, const float *partial_a,
                                            const float *partial_b, int nchunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float a = 0.0f, b = 0.0f;
    for (int k = 0; k < nchunks; k++) { a += partial_a[(size_t)k * C + c]; b += partial_b[(size_t)k * C + c]; }
    if (out_a) out_a[c] += a;
    if (out_b) out_b[c] += b;
}
template <typename Term>
void colsum_accumulate(float *out_a, float *out_b, int N, int C, Term term) {
    if (N <= 0 || (!out_a && !out_b)) return;
    int nchunks = ceil_div(N, COLSUM_ROWS_PER_CHUNK);
    float *partial = cuda_scratch(SCRATCH_PARTIALS, 2 * (size_t)nchunks * C * sizeof(float));
    dim3 grid(ceil_div(C, COLSUM_TILE), nchunks), block(COLSUM_TILE, COLSUM_THREADS_Y);
    colsum_partial_kernel<<<grid, block, 0, cuda_stream()>>>(partial, partial + (size_t)nchunks * C, N, C, term);
    cudaCheckLaunch();
    colsum_finish_kernel<<<ceil_div(C, 256), 256, 0, cuda_stream()>>>(out_a, out_b, partial,
                                                                   partial + (size_t)nchunks * C, nchunks, C);
    cudaCheckLaunch();
}

#endif /* QUORUM_CUDA_COMMON_CUH */
