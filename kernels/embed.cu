/*
 * kernels/embed.cu - token/position embedding lookup and the row gather of the heads, with their
 * backward passes. The embedding backward is deterministic without sorting or float atomics: the block
 * of the FIRST position holding a token id (its "leader") sums every position with that id in ascending
 * order into dwte[id]; other blocks exit. So each dwte row has one writer and a fixed summation order.
 */
#include "cuda_common.cuh"
#include "ops_cuda.cuh"

__device__ __forceinline__ float emb_f32(float x) { return x; }
__device__ __forceinline__ float emb_f32(uint16_t h) { return __uint_as_float((unsigned)h << 16); } /* bf16 bits */

/* out: (B,T,C) = wte[ids] (+ wpe[t]); ids: (B,T); wte: (V,C); wpe: (maxT,C) or NULL; tables fp32 or bf16 */
template <typename W>
__global__ void embedding_forward_kernel(float *out, const int *ids, const W *wte, const W *wpe, int B, int T, int C) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    long long bt = i / C;
    int c = (int)(i % C), t = (int)(bt % T);
    float v = emb_f32(wte[(long long)ids[bt] * C + c]);
    if (wpe) v += emb_f32(wpe[(long long)t * C + c]);
    out[i] = v;
}

void embedding_forward_bf16_cuda(float *out, const int *ids, const uint16_t *wte, const uint16_t *wpe, int B, int T,
                                 int C) {
    long long n = (long long)B * T * C;
    if (n == 0) return;
    embedding_forward_kernel<<<ceil_div(n, 256), 256, 0, cuda_stream()>>>(out, ids, wte, wpe, B, T, C);
    cudaCheckLaunch();
}

#define EMB_TILE 256 /* ids scanned per shared-memory tile = blockDim.x */
/* dwte: (V,C) += per id, dout: (B,T,C), ids: (B,T). One block per position p = blockIdx.x. */
__global__ void embedding_backward_wte_kernel(float *dwte, const float *dout, const int *ids, int BT, int C) {
    __shared__ int tile[EMB_TILE];
    int p = blockIdx.x, id = ids[p];
    /* leader test: no earlier position has the same id */
    for (int base = 0; base < p; base += EMB_TILE) {
        int q = base + threadIdx.x;
        int dup = q < p && ids[q] == id;
        if (__syncthreads_or(dup)) return; /* uniform across the block */
    }
    float *row = dwte + (long long)id * C;
    for (int base = p; base < BT; base += EMB_TILE) {
        int q = base + threadIdx.x;
        tile[threadIdx.x] = q < BT ? ids[q] : -1;
        __syncthreads();
        int n = min(EMB_TILE, BT - base);
        for (int k = 0; k < n; k++) {
            if (tile[k] != id) continue;
            const float *src = dout + (long long)(base + k) * C;
            for (int c = threadIdx.x; c < C; c += blockDim.x) row[c] += src[c];
        }
        __syncthreads();
    }
}

/* dwpe: (maxT,C) += sum over b of dout[b,t]; one thread per (t,c), b in ascending order */
__global__ void embedding_backward_wpe_kernel(float *dwpe, const float *dout, int B, int T, int C) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)T * C) return;
    float acc = 0.0f;
    for (int b = 0; b < B; b++) acc += dout[(long long)b * T * C + i];
    dwpe[i] += acc;
}

void embedding_forward_cuda(float *out, const int *ids, const float *wte, const float *wpe, int B, int T, int C) {
    long long n = (long long)B * T * C;
    if (n == 0) return;
    embedding_forward_kernel<<<ceil_div(n, 256), 256, 0, cuda_stream()>>>(out, ids, wte, wpe, B, T, C);
    cudaCheckLaunch();
}

void embedding_backward_cuda(float *dwte, float *dwpe, const float *dout, const int *ids, int B, int T, int C) {
    if (B * T == 0) return;
    if (dwte) {
        embedding_backward_wte_kernel<<<B * T, EMB_TILE, 0, cuda_stream()>>>(dwte, dout, ids, B * T, C);
        cudaCheckLaunch();
    }
    if (dwpe) {
        embedding_backward_wpe_kernel<<<ceil_div((long long)T * C, 256), 256, 0, cuda_stream()>>>(dwpe, dout, B, T, C);
        cudaCheckLaunch();
    }
}

/* out: (M,C) = inp[rows]; inp: (N,C); rows: (M). direction 0 gathers, 1 scatters dout back (+=);
 * rows are distinct, so the scatter has one writer per row. */
__global__ void gather_rows_kernel(float *dst, const float *src, const int *rows, int M, int C, int scatter) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)M * C) return;
    int m = (int)(i / C), c = (int)(i % C);
    long long r = (long long)rows[m] * C + c;
    if (scatter) dst[r] += src[i];
    else dst[i] = src[r];
}

void gather_forward_cuda(float *out, const float *inp, const int *rows, int M, int C) {
    if ((long long)M * C == 0) return;
    gather_rows_kernel<<<ceil_div((long long)M * C, 256), 256, 0, cuda_stream()>>>(out, inp, rows, M, C, 0);
    cudaCheckLaunch();
}

void gather_backward_cuda(float *dinp, const float *dout, const int *rows, int M, int C) {
    if ((long long)M * C == 0) return;
    gather_rows_kernel<<<ceil_div((long long)M * C, 256), 256, 0, cuda_stream()>>>(dinp, dout, rows, M, C, 1);
    cudaCheckLaunch();
}
