/*
 * kernels/attention_flash.cu - attention_varlen_forward (quorum/ops.h) on CUDA: a fused flash-attention forward.
 * One block = one (segment, query head, tile of FA_QT query rows); it walks the tile's visible keys in tiles of
 * FA_KT rows staged in shared memory and keeps, per query row, the running max m, sum l and the fp32 output
 * accumulator (online softmax: rescaled by exp(m_old - m_new) once per key tile). Nothing of size T^2 exists;
 * logsumexp m + log l is the only per-row statistic written (for a backward). GQA reads kv head h / (NH/NKV)
 * straight from the packed qkv rows (no copies per query head); causality, the shared-prefix keys of a segment
 * and the sliding window are index arithmetic on the virtual key index u (ops.h).
 *
 * Work split inside a block (FA_WARPS warps, FA_QT / FA_WARPS query rows each): scores by lane = key (a lane
 * computes q.k for key `lane` of the tile from shared memory: no shuffles), softmax statistics by warp
 * reductions, and the p.V product by lane = output channel (c = lane + 32 j), p broadcast by shuffles.
 * fp32 SIMT arithmetic; tensor-core (mma / wgmma) tiles are the next step once the device check has measured this.
 * HD <= FA_MAXHD. The CPU twin (src/model/backend_cpu.c attention_varlen_forward_cpu) is the same algorithm; the
 * backward is attention_flash_bwd.cu.
 */
#include <math.h>
#include "cuda_common.cuh"
#include "ops_cuda.cuh"
#include "attention_flash.cuh"

#define FA_QT 16     /* query rows per block */
#define FA_KT 32     /* keys per shared-memory tile: one per lane */
#define FA_WARPS 4
#define FA_RPW (FA_QT / FA_WARPS) /* query rows per warp */
#define FA_MAXHD 256
#define FA_MAXJ (FA_MAXHD / 32)
#define FA_SPLIT 8   /* blocks per (segment, head) striding over the query tiles of long segments */

struct FaArgs {
    float *out, *lse;
    const float *qkv;
    const int *segs;
    int NH, NKV, HD, width;
    float scale, softcap;
    int window;
};

__global__ void __launch_bounds__(FA_WARPS * 32) attention_flash_kernel(FaArgs a) {
    /* K tile (FA_KT,HD+1: rows padded so lane = key reads 32 different banks) | V tile (FA_KT,HD) | Q (FA_QT,HD) */
    extern __shared__ float sm[];
    int ks = a.HD + 1;
    float *sk = sm, *sv = sm + FA_KT * ks, *sq = sv + FA_KT * a.HD;
    const int *g = a.segs + 4 * blockIdx.x;
    int q0 = g[0], nq = g[1], k0 = g[2], nk = g[3];
    int h = blockIdx.y, kh = h / (a.NH / a.NKV), HD = a.HD;
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int koff = (a.NH + kh) * HD, voff = (a.NH + a.NKV + kh) * HD;
    for (int i0 = blockIdx.z * FA_QT; i0 < nq; i0 += gridDim.z * FA_QT) {
        int nrows = min(FA_QT, nq - i0);
        __syncthreads(); /* the previous tile's Q / K / V are no longer read */
        for (int x = threadIdx.x; x < FA_QT * HD; x += blockDim.x) {
            int r = x / HD, c = x % HD;
            sq[x] = r < nrows ? a.qkv[((long long)q0 + i0 + r) * a.width + (long long)h * HD + c] : 0.0f;
        }
        float m[FA_RPW], l[FA_RPW], acc[FA_RPW][FA_MAXJ];
#pragma unroll
        for (int rr = 0; rr < FA_RPW; rr++) {
            m[rr] = -INFINITY;
            l[rr] = 0.0f;
#pragma unroll
            for (int j = 0; j < FA_MAXJ; j++) acc[rr][j] = 0.0f;
        }
        int u_lo, u_hi;
        fa_key_range(nk, i0, nrows, a.window, &u_lo, &u_hi);
        for (int t0 = u_lo; t0 <= u_hi; t0 += FA_KT) {
            int nkt = fa_stage_kv(sk, ks, sv, HD, a.qkv, a.width, koff, voff, t0, u_hi, FA_KT, q0, k0, nk, HD);
#pragma unroll
            for (int rr = 0; rr < FA_RPW; rr++) { /* unrolled: m, l, acc stay in registers */
                int r = warp * FA_RPW + rr, i = i0 + r;
                int last = nk + i, lo = a.window > 0 ? max(0, last - a.window + 1) : 0, u = t0 + lane;
                float s = -INFINITY;
                if (r < nrows && lane < nkt && u <= last && u >= lo) {
                    const float *q = sq + r * HD, *k = sk + lane * ks;
                    float d = 0.0f;
                    for (int c = 0; c < HD; c++) d += q[c] * k[c];
                    d *= a.scale;
                    s = a.softcap > 0.0f ? a.softcap * tanhf(d / a.softcap) : d;
                }
                float tmax = warp_max(s);
                if (tmax != -INFINITY) { /* warp-uniform: some key of this tile is visible to row r */
                    float mn = fmaxf(m[rr], tmax), corr = expf(m[rr] - mn);
                    float p = s == -INFINITY ? 0.0f : expf(s - mn);
                    l[rr] = l[rr] * corr + warp_sum(p);
                    m[rr] = mn;
#pragma unroll
                    for (int j = 0; j < FA_MAXJ; j++) acc[rr][j] *= corr;
                    for (int kk = 0; kk < nkt; kk++) {
                        float pk = __shfl_sync(0xffffffffu, p, kk);
                        const float *v = sv + kk * HD;
#pragma unroll
                        for (int j = 0; j < FA_MAXJ; j++) {
                            int c = lane + 32 * j;
                            if (c < HD) acc[rr][j] += pk * v[c];
                        }
                    }
                }
            }
        }
#pragma unroll
        for (int rr = 0; rr < FA_RPW; rr++) {
            int r = warp * FA_RPW + rr;
            if (r < nrows) {
                long long row = (long long)q0 + i0 + r;
                float inv = 1.0f / l[rr];
#pragma unroll
                for (int j = 0; j < FA_MAXJ; j++) {
                    int c = lane + 32 * j;
                    if (c < HD) a.out[row * a.NH * HD + (long long)h * HD + c] = acc[rr][j] * inv;
                }
                if (a.lse && lane == 0) a.lse[row * a.NH + h] = m[rr] + logf(l[rr]);
            }
        }
    }
}

void attention_varlen_forward_cuda(float *out, float *lse, const float *qkv, const int *segs, int S, int NH, int NKV,
                                   int HD, float scale, float softcap, int window) {
    if (S <= 0) return;
    if (HD > FA_MAXHD)
        quorum_die_at(__FILE__, __LINE__, "use QUORUM_BACKEND=cpu for this model",
                      "attention head_dim %d exceeds the flash kernel's %d", HD, FA_MAXHD);
    size_t smem = sizeof(float) * ((size_t)FA_KT * (HD + 1) + (size_t)(FA_KT + FA_QT) * HD);
    static size_t smem_set;
    if (smem > smem_set) { /* above 48 KiB needs the opt-in (HD > 128) */
        cudaCheck(cudaFuncSetAttribute(attention_flash_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        smem_set = smem;
    }
    FaArgs a = {out, lse, qkv, segs, NH, NKV, HD, (NH + 2 * NKV) * HD, scale, softcap, window};
    dim3 grid(S, NH, FA_SPLIT);
    attention_flash_kernel<<<grid, FA_WARPS * 32, smem, cuda_stream()>>>(a);
    cudaCheckLaunch();
}
