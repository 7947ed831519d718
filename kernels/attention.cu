/*
 * kernels/attention.cu - causal self-attention with right padding and GQA, as cuBLAS strided-batched
 * GEMMs around a masked online-softmax kernel (the llm.c recipe):
 *   permute   qkv (B,T,(NH+2*NKV)*HD) -> q, k, v (B,NH,T,HD), k/v heads repeated per query group
 *   S = q k^T / sqrt(HD)             (B*NH batched (T,HD)x(HD,T) GEMM, written into att)
 *   att = masked softmax(S) in place  query t of row b sees keys j <= t, j < lens[b]; others get 0
 *   y = att v, unpermute -> out (B,T,NH*HD)
 * Backward runs the same GEMMs transposed; dk/dv of the repeated heads are summed back per kv head in
 * a fixed order (deterministic). q/k/v/y live in grow-only scratch, not in the caller's activations.
 */
#include <math.h>
#include "cuda_common.cuh"
#include "ops_cuda.cuh"

/* q, k, v: (B,NH,T,HD) <- qkv: (B,T,(NH+2*NKV)*HD). One thread per (b,h,t,d). */
__global__ void attention_permute_kernel(float *q, float *k, float *v, const float *qkv,
                                         int B, int T, int NH, int NKV, int HD) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)B * NH * T * HD) return;
    int d = (int)(i % HD), t = (int)(i / HD % T), h = (int)(i / ((long long)HD * T) % NH);
    long long b = i / ((long long)HD * T * NH);
    int kvh = h / (NH / NKV);
    const float *row = qkv + (b * T + t) * (long long)(NH + 2 * NKV) * HD;
    q[i] = row[h * HD + d];
    k[i] = row[(NH + kvh) * HD + d];
    v[i] = row[(NH + NKV + kvh) * HD + d];
}

/* rows: (B,T,NH*HD) <-> heads: (B,NH,T,HD). to_heads = 1 copies rows into heads (dout -> dy), 0 heads
 * into rows (y -> out). One thread per element. */
__global__ void attention_rows_heads_kernel(float *rows, float *heads, int B, int T, int NH, int HD, int to_heads) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * NH * HD) return;
    int d = (int)(i % HD), h = (int)(i / HD % NH), t = (int)(i / ((long long)HD * NH) % T);
    long long b = i / ((long long)HD * NH * T);
    long long j = ((b * NH + h) * T + t) * HD + d;
    if (to_heads) heads[j] = rows[i];
    else rows[i] = heads[j];
}
static void attention_rows_heads(float *rows, float *heads, int B, int T, int NH, int HD, int to_heads) {
    long long n = (long long)B * T * NH * HD;
    attention_rows_heads_kernel<<<ceil_div(n, 256), 256, 0, cuda_stream()>>>(rows, heads, B, T, NH, HD, to_heads);
    cudaCheckLaunch();
}

/* dqkv: (B,T,(NH+2*NKV)*HD) += dq, and dk, dv summed over the NH/NKV query heads of each kv head;
 * dq, dk, dv: (B,NH,T,HD). One thread per dqkv element. */
__global__ void attention_unpermute_grad_kernel(float *dqkv, const float *dq, const float *dk, const float *dv,
                                                int B, int T, int NH, int NKV, int HD) {
    int R = (NH + 2 * NKV) * HD;
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * R) return;
    int col = (int)(i % R), t = (int)(i / R % T);
    long long b = i / ((long long)R * T);
    int d = col % HD, head = col / HD, group = NH / NKV;
    float acc;
    if (head < NH) {
        acc = dq[((b * NH + head) * T + t) * HD + d];
    } else {
        bool is_k = head < NH + NKV;
        int kvh = is_k ? head - NH : head - NH - NKV;
        const float *src = is_k ? dk : dv;
        acc = 0.0f;
        for (int g = 0; g < group; g++) acc += src[((b * NH + kvh * group + g) * T + t) * HD + d];
    }
    dqkv[i] += acc;
}

/* softcap > 0: cap * tanh(x / cap) (Gemma-2), else x */
static __device__ float softcapped(float x, float softcap) { return softcap > 0.0f ? softcap * tanhf(x / softcap) : x; }

/* att: (B,NH,T,T) scores -> probabilities in place; lens: (B). One warp per row (b,h,t). Keys lo <= j <
 * t+1 are valid for t < lens[b] (lo = t - window + 1 with a sliding window, else 0); padded queries
 * (t >= lens[b]) get an all-zero row, and so a zero output and zero gradient. Scores are softcapped first. */
__global__ void attention_softmax_kernel(float *att, const int *lens, int B, int NH, int T, float softcap, int window) {
    long long row = blockIdx.x * (long long)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= (long long)B * NH * T) return;
    int t = (int)(row % T), b = (int)(row / ((long long)NH * T));
    int valid = t < lens[b] ? t + 1 : 0; /* padded queries: a zero row, like the CPU reference */
    int lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
    float *x = att + row * T;
    float m = -INFINITY, s = 0.0f;
    for (int j = lo + lane; j < valid; j += 32) {
        float xv = softcapped(x[j], softcap);
        if (xv > m) { s = s * expf(m - xv) + 1.0f; m = xv; }
        else s += expf(xv - m);
    }
    for (int o = 16; o > 0; o >>= 1)
        softmax_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int j = lane; j < T; j += 32) x[j] = j >= lo && j < valid ? expf(softcapped(x[j], softcap) - m) * inv : 0.0f;
}

/* datt: (B,NH,T,T) d(probabilities) -> d(scores before the scale) in place:
 * dS = scale * att * (datt - sum_j att * datt), times 1 - tanh^2(s / softcap) of the scaled scores s
 * (recomputed, (B,NH,T,T)) when softcapped. Masked entries have att = 0, so they get 0. */
__global__ void attention_softmax_backward_kernel(float *datt, const float *att, long long rows, int T, float scale,
                                                  const float *scores, float softcap) {
    long long row = blockIdx.x * (long long)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float *p = att + row * T;
    float *dp = datt + row * T;
    float dot = 0.0f;
    for (int j = lane; j < T; j += 32) dot += p[j] * dp[j];
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += 32) {
        float g = scale * p[j] * (dp[j] - dot);
        if (scores) {
            float th = tanhf(scores[row * T + j] / softcap);
            g *= 1.0f - th * th;
        }
        dp[j] = g;
    }
}

static void attention_permute(float *q, float *k, float *v, const float *qkv, int B, int T, int NH, int NKV, int HD) {
    long long n = (long long)B * NH * T * HD;
    attention_permute_kernel<<<ceil_div(n, 256), 256, 0, cuda_stream()>>>(q, k, v, qkv, B, T, NH, NKV, HD);
    cudaCheckLaunch();
}

void attention_ex_forward_cuda(float *out, float *att, const float *qkv, const int *lens, int B, int T, int NH,
                               int NKV, int HD, float scale, float softcap, int window) {
    long long hd = (long long)T * HD, tt = (long long)T * T, n = B * NH * hd;
    if (n == 0) return;
    float *q = cuda_scratch(SCRATCH_ATTN, 4 * n * sizeof(float)), *k = q + n, *v = k + n, *y = v + n;
    attention_permute(q, k, v, qkv, B, T, NH, NKV, HD);
    /* att (T,T) = q (T,HD) @ k^T * scale, per (b,h) */
    gemm_rowmajor(false, true, T, T, HD, scale, q, HD, hd, k, HD, hd, 0.0f, att, T, tt, B * NH);
    long long rows = (long long)B * NH * T;
    attention_softmax_kernel<<<ceil_div(rows, 8), 256, 0, cuda_stream()>>>(att, lens, B, NH, T, softcap, window);
    cudaCheckLaunch();
    /* y (T,HD) = att (T,T) @ v (T,HD) */
    gemm_rowmajor(false, false, T, HD, T, 1.0f, att, T, tt, v, HD, hd, 0.0f, y, HD, hd, B * NH);
    attention_rows_heads(out, y, B, T, NH, HD, 0);
}

void attention_ex_backward_cuda(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                                const int *lens, int B, int T, int NH, int NKV, int HD, float scale, float softcap,
                                int window) {
    long long hd = (long long)T * HD, tt = (long long)T * T, n = B * NH * hd;
    if (n == 0 || !dqkv) return;
    float *q = cuda_scratch(SCRATCH_ATTN_GRAD, 7 * n * sizeof(float)), *k = q + n, *v = k + n;
    float *dy = v + n, *dq = dy + n, *dk = dq + n, *dv = dk + n;
    attention_permute(q, k, v, qkv, B, T, NH, NKV, HD);
    attention_rows_heads((float *)dout, dy, B, T, NH, HD, 1); /* only read: dout (B,T,NH*HD) -> dy */
    /* datt (T,T) = dy (T,HD) @ v^T;  dv (T,HD) = att^T (T,T) @ dy */
    gemm_rowmajor(false, true, T, T, HD, 1.0f, dy, HD, hd, v, HD, hd, 0.0f, datt, T, tt, B * NH);
    gemm_rowmajor(true, false, T, HD, T, 1.0f, att, T, tt, dy, HD, hd, 0.0f, dv, HD, hd, B * NH);
    long long rows = (long long)B * NH * T;
    float *scores = NULL;
    if (softcap > 0.0f) { /* the scaled scores again, for the softcap's derivative */
        scores = cuda_scratch(SCRATCH_ATTN_SCORES, (size_t)(rows * T) * sizeof(float));
        gemm_rowmajor(false, true, T, T, HD, scale, q, HD, hd, k, HD, hd, 0.0f, scores, T, tt, B * NH);
    }
    attention_softmax_backward_kernel<<<ceil_div(rows, 8), 256, 0, cuda_stream()>>>(datt, att, rows, T, scale,
                                                                                 scores, softcap);
    cudaCheckLaunch();
    /* dq (T,HD) = dS (T,T) @ k;  dk (T,HD) = dS^T @ q */
    gemm_rowmajor(false, false, T, HD, T, 1.0f, datt, T, tt, k, HD, hd, 0.0f, dq, HD, hd, B * NH);
    gemm_rowmajor(true, false, T, HD, T, 1.0f, datt, T, tt, q, HD, hd, 0.0f, dk, HD, hd, B * NH);
    long long nq = (long long)B * T * (NH + 2 * NKV) * HD;
    attention_unpermute_grad_kernel<<<ceil_div(nq, 256), 256, 0, cuda_stream()>>>(dqkv, dq, dk, dv, B, T, NH, NKV, HD);
    cudaCheckLaunch();
    (void)lens, (void)window; /* the mask lives in att: masked probabilities are 0 and so are their gradients */
}

void attention_forward_cuda(float *out, float *att, const float *qkv, const int *lens, int B, int T, int NH, int NKV,
                            int HD) {
    attention_ex_forward_cuda(out, att, qkv, lens, B, T, NH, NKV, HD, 1.0f / sqrtf((float)HD), 0.0f, 0);
}

void attention_backward_cuda(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                             const int *lens, int B, int T, int NH, int NKV, int HD) {
    attention_ex_backward_cuda(dqkv, datt, dout, qkv, att, lens, B, T, NH, NKV, HD, 1.0f / sqrtf((float)HD), 0.0f, 0);
}
