/*
 * kernels/attention_flash_bwd.cu - attention_varlen_backward (quorum/ops.h) on CUDA: the flash-attention backward,
 * deterministic (no float atomics): two passes, each output element owned by one thread.
 *   dQ pass:   one block = one (segment, query head, tile of FB_ROWS query rows), as the forward: it walks the
 *              tile's visible keys in tiles of 32 (lane = key), recomputes p = exp(s - lse) and
 *              ds = p (dout.v - D), and accumulates dq (lane = channel, ds broadcast by shuffles).
 *   dK/dV pass: one block = one (segment, kv head, tile of FB_ROWS of the segment's own rows as keys); it walks
 *              every segment whose queries see those rows (the segment itself, and each segment continuing from
 *              them as its shared prefix), every query head of the GQA group, in tiles of 32 queries
 *              (lane = query), and accumulates dk += ds q, dv += p dout (lane = channel).
 * D = rowsum(dout * out) is recomputed where needed (HD multiplies per query row and tile): no scratch buffer.
 * fp32 SIMT; HD <= FB_MAXHD. The CPU twin is src/model/backend_cpu.c attention_varlen_backward_cpu.
 */
#include <limits.h>
#include <math.h>
#include "cuda_common.cuh"
#include "ops_cuda.cuh"
#include "attention_flash.cuh"

#define FB_ROWS 16   /* query rows (dQ pass) / key rows (dK/dV pass) per block */
#define FB_T 32      /* keys (dQ pass) / queries (dK/dV pass) per shared-memory tile: one per lane */
#define FB_WARPS 4
#define FB_RPW (FB_ROWS / FB_WARPS)
#define FB_MAXHD 256
#define FB_MAXJ (FB_MAXHD / 32)
#define FB_SPLIT 8   /* blocks per (segment, head) striding over the row tiles of long segments */

struct FbArgs {
    float *dqkv;
    const float *dout, *qkv, *out, *lse;
    const int *segs;
    int S, NH, NKV, HD, width;
    float scale, softcap;
    int window;
};

/* p and ds of one (query, key) score x = q.k (before scale): ds already chained through softcap and scale */
__device__ __forceinline__ void fb_grad(const FbArgs &a, float x, float dp, float lse, float D, float *p, float *ds) {
    x *= a.scale;
    float th = a.softcap > 0.0f ? tanhf(x / a.softcap) : 0.0f, s = a.softcap > 0.0f ? a.softcap * th : x;
    *p = expf(s - lse);
    *ds = *p * (dp - D) * (1.0f - th * th) * a.scale;
}

__global__ void __launch_bounds__(FB_WARPS * 32) attention_flash_dq_kernel(FbArgs a) {
    /* Q (FB_ROWS,HD) | dout (FB_ROWS,HD) | K tile (FB_T,HD+1) | V tile (FB_T,HD+1): lane = key reads distinct banks */
    extern __shared__ float sm[];
    int HD = a.HD, ks = HD + 1;
    float *sq = sm, *sdo = sq + FB_ROWS * HD, *sk = sdo + FB_ROWS * HD, *sv = sk + FB_T * ks;
    const int *g = a.segs + 4 * blockIdx.x;
    int q0 = g[0], nq = g[1], k0 = g[2], nk = g[3];
    int h = blockIdx.y, kh = h / (a.NH / a.NKV);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int koff = (a.NH + kh) * HD, voff = (a.NH + a.NKV + kh) * HD, OW = a.NH * HD;
    for (int i0 = blockIdx.z * FB_ROWS; i0 < nq; i0 += gridDim.z * FB_ROWS) {
        int nrows = min(FB_ROWS, nq - i0);
        __syncthreads();
        for (int x = threadIdx.x; x < FB_ROWS * HD; x += blockDim.x) {
            int r = x / HD, c = x % HD;
            long long row = (long long)q0 + i0 + r;
            sq[x] = r < nrows ? a.qkv[row * a.width + (long long)h * HD + c] : 0.0f;
            sdo[x] = r < nrows ? a.dout[row * OW + (long long)h * HD + c] : 0.0f;
        }
        __syncthreads();
        int u_lo, u_hi;
        fa_key_range(nk, i0, nrows, a.window, &u_lo, &u_hi);
        float D[FB_RPW], L[FB_RPW], dq[FB_RPW][FB_MAXJ] = {};
#pragma unroll
        for (int rr = 0; rr < FB_RPW; rr++) {
            int r = warp * FB_RPW + rr;
            long long row = (long long)q0 + i0 + r;
            float part = 0.0f;
            if (r < nrows)
                for (int c = lane; c < HD; c += 32) part += sdo[r * HD + c] * a.out[row * OW + (long long)h * HD + c];
            D[rr] = warp_sum(part);
            L[rr] = r < nrows ? a.lse[row * a.NH + h] : 0.0f; /* lanes: the same D and lse */
        }
        for (int t0 = u_lo; t0 <= u_hi; t0 += FB_T) {
            int nkt = fa_stage_kv(sk, ks, sv, ks, a.qkv, a.width, koff, voff, t0, u_hi, FB_T, q0, k0, nk, HD);
#pragma unroll
            for (int rr = 0; rr < FB_RPW; rr++) {
                int r = warp * FB_RPW + rr, i = i0 + r;
                if (r >= nrows) continue; /* warp-uniform */
                int last = nk + i, lo = a.window > 0 ? max(0, last - a.window + 1) : 0, u = t0 + lane;
                float p = 0.0f, ds = 0.0f;
                if (lane < nkt && u <= last && u >= lo) {
                    const float *q = sq + r * HD, *dy = sdo + r * HD, *k = sk + lane * ks, *v = sv + lane * ks;
                    float x = 0.0f, dp = 0.0f;
                    for (int c = 0; c < HD; c++) x += q[c] * k[c], dp += dy[c] * v[c];
                    fb_grad(a, x, dp, L[rr], D[rr], &p, &ds);
                }
                for (int kk = 0; kk < nkt; kk++) {
                    float dsk = __shfl_sync(0xffffffffu, ds, kk);
#pragma unroll
                    for (int j = 0; j < FB_MAXJ; j++) {
                        int c = lane + 32 * j;
                        if (c < HD) dq[rr][j] += dsk * sk[kk * ks + c];
                    }
                }
            }
        }
#pragma unroll
        for (int rr = 0; rr < FB_RPW; rr++) {
            int r = warp * FB_RPW + rr;
            if (r >= nrows) continue;
            float *d = a.dqkv + ((long long)q0 + i0 + r) * a.width + (long long)h * HD;
#pragma unroll
            for (int j = 0; j < FB_MAXJ; j++) {
                int c = lane + 32 * j;
                if (c < HD) d[c] += dq[rr][j];
            }
        }
    }
}

/* Virtual key index of physical row r for the queries of segment (q0, nk, k0) = g2, or -1 when they do not see
 * it: own rows when g2 is the block's segment `self`, else the rows of g2's shared prefix. */
__device__ __forceinline__ int fb_key_u(const int *g2, int self, long long r) {
    if (self) return (int)(g2[3] + (r - g2[0]));
    return r >= g2[2] && r < (long long)g2[2] + g2[3] ? (int)(r - g2[2]) : -1;
}

__global__ void __launch_bounds__(FB_WARPS * 32) attention_flash_dkv_kernel(FbArgs a) {
    /* K rows (FB_ROWS,HD) | V rows (FB_ROWS,HD) | Q tile (FB_T,HD+1) | dout tile (FB_T,HD+1) | lse (FB_T) | D (FB_T) */
    extern __shared__ float sm[];
    int HD = a.HD, qs = HD + 1;
    float *sk = sm, *sv = sk + FB_ROWS * HD, *sq = sv + FB_ROWS * HD, *sdo = sq + FB_T * qs;
    float *slse = sdo + FB_T * qs, *sD = slse + FB_T;
    const int *g = a.segs + 4 * blockIdx.x;
    int q0 = g[0], nq = g[1];
    int kh = blockIdx.y, group = a.NH / a.NKV;
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int koff = (a.NH + kh) * HD, voff = (a.NH + a.NKV + kh) * HD, OW = a.NH * HD;
    for (int j0 = blockIdx.z * FB_ROWS; j0 < nq; j0 += gridDim.z * FB_ROWS) {
        int nrows = min(FB_ROWS, nq - j0);
        long long r0 = (long long)q0 + j0;
        __syncthreads();
        for (int x = threadIdx.x; x < FB_ROWS * HD; x += blockDim.x) {
            int r = x / HD, c = x % HD;
            sk[x] = r < nrows ? a.qkv[(r0 + r) * a.width + koff + c] : 0.0f;
            sv[x] = r < nrows ? a.qkv[(r0 + r) * a.width + voff + c] : 0.0f;
        }
        float dk[FB_RPW][FB_MAXJ] = {}, dv[FB_RPW][FB_MAXJ] = {};
        for (int s2 = 0; s2 < a.S; s2++) { /* block-uniform: which segments' queries see these rows */
            const int *g2 = a.segs + 4 * s2;
            int self = s2 == (int)blockIdx.x, umin = INT_MAX, umax = -1;
            for (int r = 0; r < nrows; r++) {
                int u = fb_key_u(g2, self, r0 + r);
                if (u >= 0) umin = min(umin, u), umax = max(umax, u);
            }
            if (umax < 0) continue;
            int nk2 = g2[3], i_lo = max(0, umin - nk2), i_hi = g2[1] - 1;
            if (a.window > 0) i_hi = min(i_hi, umax - nk2 + a.window - 1);
            for (int h = kh * group; h < (kh + 1) * group; h++)
                for (int i0 = i_lo; i0 <= i_hi; i0 += FB_T) {
                    int nqt = min(FB_T, i_hi + 1 - i0);
                    __syncthreads();
                    for (int x = threadIdx.x; x < FB_T * HD; x += blockDim.x) {
                        int t = x / HD, c = x % HD;
                        long long row = (long long)g2[0] + i0 + t;
                        sq[t * qs + c] = t < nqt ? a.qkv[row * a.width + (long long)h * HD + c] : 0.0f;
                        sdo[t * qs + c] = t < nqt ? a.dout[row * OW + (long long)h * HD + c] : 0.0f;
                    }
                    __syncthreads();
                    if (warp == 0) { /* lane = query: its D and lse */
                        long long row = (long long)g2[0] + i0 + lane;
                        float D = 0.0f;
                        if (lane < nqt)
                            for (int c = 0; c < HD; c++) D += sdo[lane * qs + c] * a.out[row * OW + (long long)h * HD + c];
                        sD[lane] = D;
                        slse[lane] = lane < nqt ? a.lse[row * a.NH + h] : 0.0f;
                    }
                    __syncthreads();
#pragma unroll
                    for (int rr = 0; rr < FB_RPW; rr++) {
                        int r = warp * FB_RPW + rr;
                        if (r >= nrows) continue; /* warp-uniform */
                        int u = fb_key_u(g2, self, r0 + r), last = nk2 + i0 + lane;
                        float p = 0.0f, ds = 0.0f;
                        if (lane < nqt && u >= 0 && u <= last && (a.window <= 0 || last - u < a.window)) {
                            const float *q = sq + lane * qs, *dy = sdo + lane * qs, *k = sk + r * HD, *v = sv + r * HD;
                            float x = 0.0f, dp = 0.0f;
                            for (int c = 0; c < HD; c++) x += q[c] * k[c], dp += dy[c] * v[c];
                            fb_grad(a, x, dp, slse[lane], sD[lane], &p, &ds);
                        }
                        for (int t = 0; t < nqt; t++) {
                            float pt = __shfl_sync(0xffffffffu, p, t), dst = __shfl_sync(0xffffffffu, ds, t);
#pragma unroll
                            for (int j = 0; j < FB_MAXJ; j++) {
                                int c = lane + 32 * j;
                                if (c < HD) {
                                    dv[rr][j] += pt * sdo[t * qs + c];
                                    dk[rr][j] += dst * sq[t * qs + c];
                                }
                            }
                        }
                    }
                }
        }
#pragma unroll
        for (int rr = 0; rr < FB_RPW; rr++) {
            int r = warp * FB_RPW + rr;
            if (r >= nrows) continue;
            float *d = a.dqkv + (r0 + r) * a.width;
#pragma unroll
            for (int j = 0; j < FB_MAXJ; j++) {
                int c = lane + 32 * j;
                if (c < HD) {
                    d[koff + c] += dk[rr][j];
                    d[voff + c] += dv[rr][j];
                }
            }
        }
    }
}

/* dynamic shared memory above 48 KiB needs the opt-in (large HD), once per kernel and size */
static void fb_smem_optin(const void *kernel, size_t smem, size_t *set) {
    if (smem <= *set) return;
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    *set = smem;
}

void attention_varlen_backward_cuda(float *dqkv, const float *dout, const float *qkv, const float *out,
                                    const float *lse, const int *segs, int S, int NH, int NKV, int HD, float scale,
                                    float softcap, int window) {
    if (S <= 0) return;
    if (HD > FB_MAXHD)
        quorum_die_at(__FILE__, __LINE__, "use QUORUM_BACKEND=cpu for this model",
                      "attention head_dim %d exceeds the flash backward kernel's %d", HD, FB_MAXHD);
    FbArgs a = {dqkv, dout, qkv, out, lse, segs, S, NH, NKV, HD, (NH + 2 * NKV) * HD, scale, softcap, window};
    size_t smem_q = sizeof(float) * (2 * (size_t)FB_ROWS * HD + 2 * (size_t)FB_T * (HD + 1));
    size_t smem_kv = smem_q + sizeof(float) * 2 * FB_T;
    static size_t set_q, set_kv;
    fb_smem_optin((const void *)attention_flash_dq_kernel, smem_q, &set_q);
    fb_smem_optin((const void *)attention_flash_dkv_kernel, smem_kv, &set_kv);
    attention_flash_dq_kernel<<<dim3(S, NH, FB_SPLIT), FB_WARPS * 32, smem_q, cuda_stream()>>>(a);
    cudaCheckLaunch();
    attention_flash_dkv_kernel<<<dim3(S, NKV, FB_SPLIT), FB_WARPS * 32, smem_kv, cuda_stream()>>>(a);
    cudaCheckLaunch();
}
