/*
 * kernels/pointwise.cu - elementwise ops: residual add, gelu (tanh), SwiGLU, GeGLU, RoPE, and the optional
 * scale / softcap / ReLU, and the LoRA adapter's strided add and dropout. One thread per
 * element (per rotated pair for RoPE); each backward is += into its gradient like the CPU reference.
 */
#include <math.h>
#include "cuda_common.cuh"
#include "ops_cuda.cuh"

/* Runs f(i) for i in [0,n) - one thread per index. */
template <typename F>
__global__ void for_each_kernel(long long n, F f) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) f(i);
}
template <typename F>
static void for_each(long long n, F f) {
    if (n <= 0) return;
    for_each_kernel<<<ceil_div(n, 256), 256, 0, cuda_stream()>>>(n, f);
    cudaCheckLaunch();
}

/* out, inp1, inp2: (n) */
void residual_forward_cuda(float *out, const float *inp1, const float *inp2, size_t n) {
    for_each(n, [=] __device__(long long i) { out[i] = inp1[i] + inp2[i]; });
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
/* out, inp: (n). GPT-2 gelu_new. */
void gelu_forward_cuda(float *out, const float *inp, size_t n) {
    for_each(n, [=] __device__(long long i) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
    });
}
/* dinp: (n) += gelu'(inp) * dout */
void gelu_backward_cuda(float *dinp, const float *inp, const float *dout, size_t n) {
    for_each(n, [=] __device__(long long i) {
        float x = inp[i];
        float th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
        float dth = (1.0f - th * th) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += (0.5f * (1.0f + th) + 0.5f * x * dth) * dout[i];
    });
}

/* out: (N,F) = silu(inp[:, :F]) * inp[:, F:], inp: (N,2F) */
void swiglu_forward_cuda(float *out, const float *inp, int N, int F) {
    for_each((long long)N * F, [=] __device__(long long i) {
        long long n = i / F, f = i % F;
        float g = inp[n * 2 * F + f], u = inp[n * 2 * F + F + f];
        out[i] = g / (1.0f + expf(-g)) * u;
    });
}
/* dinp: (N,2F) += ..., dout: (N,F), inp: (N,2F) */
void swiglu_backward_cuda(float *dinp, const float *dout, const float *inp, int N, int F) {
    for_each((long long)N * F, [=] __device__(long long i) {
        long long n = i / F, f = i % F;
        float g = inp[n * 2 * F + f], u = inp[n * 2 * F + F + f];
        float sg = 1.0f / (1.0f + expf(-g));
        dinp[n * 2 * F + f] += dout[i] * u * sg * (1.0f + g * (1.0f - sg));
        dinp[n * 2 * F + F + f] += dout[i] * g * sg;
    });
}

/* x: (B,T,(NH+2*NKV)*HD) in place on the NH+NKV q/k heads; cos, sin: (T,HD/2).
 * direction +1 rotates by theta (forward), -1 by -theta (the transpose, for backward). */
static void rope_rotate(float *x, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HD,
                        float direction) {
    int half = HD / 2, heads = NH + NKV, row = (NH + 2 * NKV) * HD;
    for_each((long long)B * T * heads * half, [=] __device__(long long i) {
        int k = (int)(i % half);
        long long rest = i / half;
        int h = (int)(rest % heads);
        long long bt = rest / heads;
        int t = (int)(bt % T);
        float *p = x + bt * row + (long long)h * HD;
        float c = cos[(long long)t * half + k], s = direction * sin[(long long)t * half + k];
        float x0 = p[k], x1 = p[k + half];
        p[k] = x0 * c - x1 * s;
        p[k + half] = x1 * c + x0 * s;
    });
}
void rope_forward_cuda(float *qkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HD) {
    rope_rotate(qkv, cos, sin, B, T, NH, NKV, HD, 1.0f);
}
void rope_backward_cuda(float *dqkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HD) {
    rope_rotate(dqkv, cos, sin, B, T, NH, NKV, HD, -1.0f);
}

/* ---- optional ops (quorum/ops.h) ---- */

static __device__ float gelu_tanh(float x) { return 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x))); }
static __device__ float gelu_tanh_grad(float x) {
    float th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
}
/* out: (N,F) = gelu_tanh(inp[:, :F]) * inp[:, F:], inp: (N,2F) */
void geglu_forward_cuda(float *out, const float *inp, int N, int F) {
    for_each((long long)N * F, [=] __device__(long long i) {
        long long n = i / F, f = i % F;
        out[i] = gelu_tanh(inp[n * 2 * F + f]) * inp[n * 2 * F + F + f];
    });
}
void geglu_backward_cuda(float *dinp, const float *dout, const float *inp, int N, int F) {
    for_each((long long)N * F, [=] __device__(long long i) {
        long long n = i / F, f = i % F;
        float g = inp[n * 2 * F + f], u = inp[n * 2 * F + F + f];
        dinp[n * 2 * F + f] += dout[i] * u * gelu_tanh_grad(g);
        dinp[n * 2 * F + F + f] += dout[i] * gelu_tanh(g);
    });
}
void scale_forward_cuda(float *out, const float *inp, float s, size_t n) {
    for_each((long long)n, [=] __device__(long long i) { out[i] = inp[i] * s; });
}
void softcap_forward_cuda(float *out, const float *inp, float cap, size_t n) {
    for_each((long long)n, [=] __device__(long long i) { out[i] = cap * tanhf(inp[i] / cap); });
}
/* OVERWRITES dinp (may alias dout), like the CPU reference */
void softcap_backward_cuda(float *dinp, const float *dout, const float *out, float cap, size_t n) {
    for_each((long long)n, [=] __device__(long long i) {
        float y = out[i] / cap;
        dinp[i] = dout[i] * (1.0f - y * y);
    });
}
void relu_forward_cuda(float *out, const float *inp, size_t n) {
    for_each((long long)n, [=] __device__(long long i) { out[i] = inp[i] > 0.0f ? inp[i] : 0.0f; });
}
void relu_backward_cuda(float *dinp, const float *dout, const float *out, size_t n) {
    for_each((long long)n, [=] __device__(long long i) { if (out[i] > 0.0f) dinp[i] += dout[i]; });
}

/* ---- LoRA adapters ---- */
/* y[n*ldy + j] += s * x[n*ldx + j] for (N,W) */
void axpy_cols_cuda(float *y, int ldy, const float *x, int ldx, float s, int N, int W) {
    for_each((long long)N * W, [=] __device__(long long i) {
        long long n = i / W, j = i % W;
        y[n * ldy + j] += s * x[n * ldx + j];
    });
}
/* the device twin of quorum/rng.h rng_counter_u64 (SplitMix64 output i of the stream at seed) */
__device__ static inline unsigned long long counter_u64(unsigned long long seed, unsigned long long i) {
    unsigned long long z = seed + (i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* inverted dropout, mask element i = counter_u64(seed, i) >> 40 >= p * 2^24 (quorum/ops.h); out may alias inp */
void dropout_forward_cuda(float *out, const float *inp, size_t n, float p, uint64_t seed) {
    float keep_scale = 1.0f / (1.0f - p), thr = p * 16777216.0f;
    unsigned long long sd = seed;
    for_each((long long)n, [=] __device__(long long i) {
        out[i] = (float)(counter_u64(sd, (unsigned long long)i) >> 40) >= thr ? inp[i] * keep_scale : 0.0f;
    });
}
