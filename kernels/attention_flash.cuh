/* kernels/attention_flash.cuh - what the flash-attention forward (attention_flash.cu) and backward
 * (attention_flash_bwd.cu) share: a segment's key rows (quorum/ops.h attention_varlen_forward) and the staging of
 * a tile of them into shared memory. */
#ifndef QUORUM_ATTENTION_FLASH_CUH
#define QUORUM_ATTENTION_FLASH_CUH

/* physical row of virtual key u of a segment (prefix rows first, then its own rows) */
__device__ __forceinline__ long long fa_key_row(int u, int q0, int k0, int nk) {
    return u < nk ? (long long)k0 + u : (long long)q0 + (u - nk);
}

/* The virtual keys [*u_lo, *u_hi] that some query of rows i0 .. i0+nrows-1 of a segment (nk prefix rows) sees */
__device__ __forceinline__ void fa_key_range(int nk, int i0, int nrows, int window, int *u_lo, int *u_hi) {
    *u_hi = nk + i0 + nrows - 1;
    *u_lo = window > 0 ? max(0, nk + i0 - window + 1) : 0;
}

/* The next tile of keys, t0 .. t0+nkt-1 with nkt = min(tile, u_hi + 1 - t0), of segment (q0, k0, nk) into sk (row
 * stride ks) and their values into sv (row stride vs), tile rows nkt .. tile-1 zeroed; K / V of the kv head at
 * column koff / voff of qkv rows of `width` floats. The whole block calls it (it synchronizes before, when the
 * previous tile is no longer read, and after). Returns nkt. */
__device__ __forceinline__ int fa_stage_kv(float *sk, int ks, float *sv, int vs, const float *qkv, int width,
                                           int koff, int voff, int t0, int u_hi, int tile, int q0, int k0, int nk,
                                           int HD) {
    int nkt = min(tile, u_hi + 1 - t0);
    __syncthreads();
    for (int x = threadIdx.x; x < tile * HD; x += blockDim.x) {
        int r = x / HD, c = x % HD;
        float kv = 0.0f, vv = 0.0f;
        if (r < nkt) {
            const float *row = qkv + fa_key_row(t0 + r, q0, k0, nk) * width;
            kv = row[koff + c];
            vv = row[voff + c];
        }
        sk[r * ks + c] = kv;
        sv[r * vs + c] = vv;
    }
    __syncthreads();
    return nkt;
}
#endif
