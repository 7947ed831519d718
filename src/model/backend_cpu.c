/* backend_cpu.c - the reference backend: plain loops (cblas_sgemm for GEMMs when available).
 * Every function mirrors a CUDA kernel of kernels/ (.cu files); see quorum/ops.h for the contract. */
#include "quorum/ops.h"
#include "quorum/common.h"
#include "quorum/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef QUORUM_HAVE_CBLAS
#include <cblas.h>
static int use_blas = 1;
#else
static int use_blas = 0;
#endif

#ifdef QUORUM_HAVE_CBLAS
#pragma weak openblas_set_num_threads /* absent from other CBLAS libraries: then nothing to pin */
#endif
int backend_cpu_pin_threads(void) {
    const char *env = getenv("QUORUM_BLAS_THREADS");
    int n = env && atoi(env) > 0 ? atoi(env) : 1;
#ifdef QUORUM_HAVE_CBLAS
    if (openblas_set_num_threads) openblas_set_num_threads(n);
#endif
    return n;
}

int backend_cpu_use_blas(int on) {
    int prev = use_blas;
#ifdef QUORUM_HAVE_CBLAS
    use_blas = on ? 1 : 0;
#endif
    return prev;
}

/* ---- memory ---- */
static void *alloc_cpu(size_t bytes) { return xmalloc(bytes); }
static void free_cpu(void *p) { free(p); }
static void copy_cpu(void *dst, const void *src, size_t bytes) { if (bytes) memmove(dst, src, bytes); }
static void zero_cpu(void *p, size_t bytes) { if (bytes) memset(p, 0, bytes); }

/* ---- matmul ---- */
enum { TILE = 64 };

/* out (N,OC) = inp (N,C) @ weight^T, out rows `ldo` apart: row-by-row dot products, tiled so a block of
 * weight rows stays in cache */
static void gemm_nt_loop(float *out, int ldo, const float *inp, const float *weight, int N, int C, int OC) {
    for (int n0 = 0; n0 < N; n0 += TILE)
        for (int o0 = 0; o0 < OC; o0 += TILE) {
            int n1 = n0 + TILE < N ? n0 + TILE : N, o1 = o0 + TILE < OC ? o0 + TILE : OC;
            for (int n = n0; n < n1; n++) {
                const float *x = inp + (size_t)n * C;
                for (int o = o0; o < o1; o++) {
                    const float *w = weight + (size_t)o * C;
                    float s = 0.0f;
                    for (int c = 0; c < C; c++) s += x[c] * w[c];
                    out[(size_t)n * ldo + o] = s;
                }
            }
        }
}

/* out (N,OC) rows ldo apart = inp (N,C) @ weight^T, weight fp32 */
static void gemm_nt(float *out, int ldo, const float *inp, const float *weight, int N, int C, int OC) {
#ifdef QUORUM_HAVE_CBLAS
    if (use_blas) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, ldo);
        return;
    }
#endif
    gemm_nt_loop(out, ldo, inp, weight, N, C, OC);
}

static void add_bias(float *out, const float *bias, int N, int OC) {
    if (bias)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] += bias[o];
}

/* y (R,K) += a (R,J) @ b (J,K), all row-major, a's rows lda apart: axpy rows of b, tiled over j */
static void gemm_nn_acc_loop(float *y, const float *a, int lda, const float *b, int R, int J, int K) {
    for (int j0 = 0; j0 < J; j0 += TILE) {
        int j1 = j0 + TILE < J ? j0 + TILE : J;
        for (int r = 0; r < R; r++) {
            float *yr = y + (size_t)r * K;
            for (int j = j0; j < j1; j++) {
                float s = a[(size_t)r * lda + j];
                const float *bj = b + (size_t)j * K;
                for (int k = 0; k < K; k++) yr[k] += s * bj[k];
            }
        }
    }
}

/* y (R,K) += a^T @ b with a (J,R), b (J,K) */
static void gemm_tn_acc_loop(float *y, const float *a, const float *b, int R, int J, int K) {
    for (int r0 = 0; r0 < R; r0 += TILE) {
        int r1 = r0 + TILE < R ? r0 + TILE : R;
        for (int j = 0; j < J; j++) {
            const float *bj = b + (size_t)j * K;
            for (int r = r0; r < r1; r++) {
                float s = a[(size_t)j * R + r];
                float *yr = y + (size_t)r * K;
                for (int k = 0; k < K; k++) yr[k] += s * bj[k];
            }
        }
    }
}

static void matmul_forward_cpu(float *out, const float *inp, const float *weight, const float *bias,
                               int N, int C, int OC) {
    gemm_nt(out, OC, inp, weight, N, C, OC);
    add_bias(out, bias, N, OC);
}

/* The bf16 GEMM converts PANEL_FLOATS worth of weight rows at a time into a reused fp32 panel and runs the
 * fp32 GEMM on it: the whole weight is never widened, and the conversion (OC*C per call) is small next to
 * the 2*N*OC*C flops once N is a few dozen rows. */
enum { PANEL_FLOATS = 1 << 20 }; /* 4 MiB: a panel stays in L2/L3 while the GEMM streams inp past it */
static float *panel;             /* grown once, kept (one BLAS thread per rank: no concurrent callers) */
static size_t panel_cap;

/* weight rows per panel for a (OC,C) weight; grows the panel to fit */
static int panel_rows(int C, int OC) {
    int rows = PANEL_FLOATS / C;
    rows = rows < 16 ? 16 : rows > OC ? OC : rows;
    if ((size_t)rows * C > panel_cap) {
        free(panel);
        panel_cap = (size_t)rows * C;
        panel = xmalloc(sizeof(float) * panel_cap);
    }
    return rows;
}

/* the panel = rows [o0, o0 + r) of the bf16 weight (OC,C), widened to fp32 (exact) */
static const float *panel_widen(const uint16_t *weight, int o0, int r, int C) {
    const uint16_t *w = weight + (size_t)o0 * C;
    for (size_t i = 0; i < (size_t)r * C; i++) panel[i] = bf16_to_f32(w[i]);
    return panel;
}

static void matmul_forward_bf16_cpu(float *out, const float *inp, const uint16_t *weight, const float *bias, int N,
                                    int C, int OC) {
    int rows = panel_rows(C, OC);
    for (int o0 = 0; o0 < OC; o0 += rows) {
        int r = OC - o0 < rows ? OC - o0 : rows;
        gemm_nt(out + o0, OC, inp, panel_widen(weight, o0, r, C), N, C, r);
    }
    add_bias(out, bias, N, OC);
}

static void matmul_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, int N, int C, int OC) {
#ifdef QUORUM_HAVE_CBLAS
    if (use_blas) {
        if (dinp)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
        if (dweight)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    } else
#endif
    {
        if (dinp) gemm_nn_acc_loop(dinp, dout, OC, weight, N, OC, C);
        if (dweight) gemm_tn_acc_loop(dweight, dout, inp, OC, N, C);
    }
    if (dbias)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) dbias[o] += dout[(size_t)n * OC + o];
}

/* dinp += dout @ W panel by panel (dout's columns [o0, o0 + r) times the widened rows), then the fp32
 * weight and bias gradients of matmul_backward_cpu, which do not read the weight */
static void matmul_backward_bf16_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                     const uint16_t *weight, int N, int C, int OC) {
    if (dinp) {
        int rows = panel_rows(C, OC);
        for (int o0 = 0; o0 < OC; o0 += rows) {
            int r = OC - o0 < rows ? OC - o0 : rows;
            const float *w = panel_widen(weight, o0, r, C);
#ifdef QUORUM_HAVE_CBLAS
            if (use_blas) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, r, 1.0f, dout + o0, OC, w, C, 1.0f, dinp, C);
                continue;
            }
#endif
            gemm_nn_acc_loop(dinp, dout + o0, OC, w, N, r, C);
        }
    }
    matmul_backward_cpu(NULL, dweight, dbias, dout, inp, NULL, N, C, OC);
}

static void cast_f32_to_bf16_cpu(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof u);
        dst[i] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40)           /* quiet NaN */
                                                 : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16); /* RNE */
    }
}

/* ---- norms ---- */
static void layernorm_forward_cpu(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                  const float *bias, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float m = 0.0f, v = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        float s = 1.0f / sqrtf(v / C + eps);
        float *y = out + (size_t)n * C;
        for (int c = 0; c < C; c++) y[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

static void layernorm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                   const float *weight, const float *mean, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float m = mean[n], s = rstd[n], dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s, dnorm = weight[c] * dy[c];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s, dnorm = weight[c] * dy[c];
            if (dbias) dbias[c] += dy[c];
            if (dweight) dweight[c] += norm * dy[c];
            if (dinp) dinp[(size_t)n * C + c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
}

static void rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                                float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float s = 1.0f / sqrtf(ss / C + eps);
        float *y = out + (size_t)n * C;
        for (int c = 0; c < C; c++) y[c] = x[c] * s * weight[c];
        rstd[n] = s;
    }
}

static void rmsnorm_backward_cpu(float *dinp, float *dweight, const float *dout, const float *inp,
                                 const float *weight, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float s = rstd[n], dot = 0.0f; /* sum_c dy*w*x */
        for (int c = 0; c < C; c++) dot += dy[c] * weight[c] * x[c];
        float k = dot * s * s * s / C;
        for (int c = 0; c < C; c++) {
            if (dweight) dweight[c] += dy[c] * x[c] * s;
            if (dinp) dinp[(size_t)n * C + c] += dy[c] * weight[c] * s - k * x[c];
        }
    }
}

/* ---- elementwise ---- */
static void residual_forward_cpu(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
static void gelu_forward_cpu(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}
static void gelu_backward_cpu(float *dinp, const float *inp, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], u = GELU_SCALE * (x + 0.044715f * x * x * x), th = tanhf(u);
        float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += dout[i] * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
    }
}

static void swiglu_forward_cpu(float *out, const float *inp, int N, int F) {
    for (int n = 0; n < N; n++) {
        const float *g = inp + (size_t)n * 2 * F, *u = g + F;
        for (int f = 0; f < F; f++) out[(size_t)n * F + f] = g[f] / (1.0f + expf(-g[f])) * u[f];
    }
}
static void swiglu_backward_cpu(float *dinp, const float *dout, const float *inp, int N, int F) {
    for (int n = 0; n < N; n++) {
        const float *g = inp + (size_t)n * 2 * F, *u = g + F, *dy = dout + (size_t)n * F;
        float *dg = dinp + (size_t)n * 2 * F, *du = dg + F;
        for (int f = 0; f < F; f++) {
            float sg = 1.0f / (1.0f + expf(-g[f])), silu = g[f] * sg;
            du[f] += dy[f] * silu;
            dg[f] += dy[f] * u[f] * sg * (1.0f + g[f] * (1.0f - sg));
        }
    }
}

/* ---- attention ---- */
/* rotates the q and k heads of every (b,t) by +theta (dir = 1) or -theta (dir = -1) */
static void rope_rotate(float *qkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HD,
                        float dir) {
    int half = HD / 2, width = (NH + 2 * NKV) * HD;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *row = qkv + ((size_t)b * T + t) * width;
            const float *c = cos + (size_t)t * half, *s = sin + (size_t)t * half;
            for (int h = 0; h < NH + NKV; h++) {
                float *x = row + (size_t)h * HD;
                for (int i = 0; i < half; i++) {
                    float x1 = x[i], x2 = x[i + half], si = dir * s[i];
                    x[i] = x1 * c[i] - x2 * si;
                    x[i + half] = x2 * c[i] + x1 * si;
                }
            }
        }
}
static void rope_forward_cpu(float *qkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HD) {
    rope_rotate(qkv, cos, sin, B, T, NH, NKV, HD, 1.0f);
}
static void rope_backward_cpu(float *dqkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HD) {
    rope_rotate(dqkv, cos, sin, B, T, NH, NKV, HD, -1.0f);
}

/* Scores of query t (row a, zero outside the visible keys) -> probabilities; y (HD) = sum a v.
 * Visible keys: lo <= t2 <= t, lo = t - window + 1 (0 without a window). */
static int att_lo(int t, int window) { return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0; }

static void attention_ex_forward_cpu(float *out, float *att, const float *qkv, const int *lens, int B, int T,
                                     int NH, int NKV, int HD, float scale, float softcap, int window) {
    int width = (NH + 2 * NKV) * HD, group = NH / NKV;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int kh = h / group;
            for (int t = 0; t < T; t++) {
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                float *y = out + ((size_t)b * T + t) * NH * HD + (size_t)h * HD;
                memset(a, 0, sizeof(float) * T);
                memset(y, 0, sizeof(float) * HD);
                if (t >= lens[b]) continue; /* padded query: nothing downstream reads it */
                const float *q = qkv + ((size_t)b * T + t) * width + (size_t)h * HD;
                float mx = -INFINITY;
                int lo = att_lo(t, window);
                for (int t2 = lo; t2 <= t; t2++) {
                    const float *k = qkv + ((size_t)b * T + t2) * width + (size_t)(NH + kh) * HD;
                    float s = 0.0f;
                    for (int i = 0; i < HD; i++) s += q[i] * k[i];
                    a[t2] = s * scale;
                    if (softcap > 0) a[t2] = softcap * tanhf(a[t2] / softcap);
                    if (a[t2] > mx) mx = a[t2];
                }
                float sum = 0.0f;
                for (int t2 = lo; t2 <= t; t2++) sum += (a[t2] = expf(a[t2] - mx));
                for (int t2 = lo; t2 <= t; t2++) {
                    a[t2] /= sum;
                    const float *v = qkv + ((size_t)b * T + t2) * width + (size_t)(NH + NKV + kh) * HD;
                    for (int i = 0; i < HD; i++) y[i] += a[t2] * v[i];
                }
            }
        }
}

static void attention_ex_backward_cpu(float *dqkv, float *datt, const float *dout, const float *qkv,
                                      const float *att, const int *lens, int B, int T, int NH, int NKV, int HD,
                                      float scale, float softcap, int window) {
    int width = (NH + 2 * NKV) * HD, group = NH / NKV;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int kh = h / group;
            for (int t = 0; t < lens[b] && t < T; t++) {
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                float *da = datt + (((size_t)b * NH + h) * T + t) * T;
                const float *dy = dout + ((size_t)b * T + t) * NH * HD + (size_t)h * HD;
                const float *q = qkv + ((size_t)b * T + t) * width + (size_t)h * HD;
                float *dq = dqkv + ((size_t)b * T + t) * width + (size_t)h * HD;
                float dot = 0.0f; /* sum_t2 a * da */
                int lo = att_lo(t, window);
                for (int t2 = lo; t2 <= t; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * width + (size_t)(NH + NKV + kh) * HD;
                    float *dv = dqkv + ((size_t)b * T + t2) * width + (size_t)(NH + NKV + kh) * HD;
                    float s = 0.0f;
                    for (int i = 0; i < HD; i++) {
                        s += dy[i] * v[i];
                        dv[i] += a[t2] * dy[i];
                    }
                    da[t2] = s;
                    dot += a[t2] * s;
                }
                for (int t2 = lo; t2 <= t; t2++) {
                    const float *k = qkv + ((size_t)b * T + t2) * width + (size_t)(NH + kh) * HD;
                    float *dk = dqkv + ((size_t)b * T + t2) * width + (size_t)(NH + kh) * HD;
                    float dpre = a[t2] * (da[t2] - dot) * scale;
                    if (softcap > 0) { /* d(cap tanh(x/cap))/dx = 1 - tanh^2, x recomputed from q.k */
                        float s = 0.0f;
                        for (int i = 0; i < HD; i++) s += q[i] * k[i];
                        float th = tanhf(s * scale / softcap);
                        dpre *= 1.0f - th * th;
                    }
                    for (int i = 0; i < HD; i++) {
                        dq[i] += dpre * k[i];
                        dk[i] += dpre * q[i];
                    }
                }
            }
        }
}

static void attention_forward_cpu(float *out, float *att, const float *qkv, const int *lens, int B, int T,
                                  int NH, int NKV, int HD) {
    attention_ex_forward_cpu(out, att, qkv, lens, B, T, NH, NKV, HD, 1.0f / sqrtf((float)HD), 0.0f, 0);
}

static void attention_backward_cpu(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                                   const int *lens, int B, int T, int NH, int NKV, int HD) {
    attention_ex_backward_cpu(dqkv, datt, dout, qkv, att, lens, B, T, NH, NKV, HD, 1.0f / sqrtf((float)HD), 0.0f, 0);
}

/* ---- packed flash-style attention (ops.h attention_varlen_forward) ---- */
enum { KEY_BLOCK = 64 };

/* One query row against its visible keys, KEY_BLOCK at a time: scores of the block, then the running max m
 * and sum l rescaled once per block (acc *= exp(m_old - m_new)). */
static void varlen_row(float *y, float *lse, const float *q, const float *qkv, int width, int koff, int voff,
                       int q0, int k0, int nk, int i, int HD, float scale, float softcap, int window, float *acc) {
    int last = nk + i, lo = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;
    float m = -INFINITY, l = 0.0f, s[KEY_BLOCK];
    memset(acc, 0, sizeof(float) * HD);
    for (int u0 = lo; u0 <= last; u0 += KEY_BLOCK) {
        int u1 = u0 + KEY_BLOCK <= last + 1 ? u0 + KEY_BLOCK : last + 1;
        float bm = -INFINITY;
        for (int u = u0; u < u1; u++) {
            const float *k = qkv + (size_t)(u < nk ? k0 + u : q0 + u - nk) * width + koff;
            float d = 0.0f;
            for (int c = 0; c < HD; c++) d += q[c] * k[c];
            d *= scale;
            if (softcap > 0) d = softcap * tanhf(d / softcap);
            s[u - u0] = d;
            bm = d > bm ? d : bm;
        }
        float mn = bm > m ? bm : m, corr = expf(m - mn); /* m = -inf: corr = 0, acc and l are 0 anyway */
        l *= corr;
        for (int c = 0; c < HD; c++) acc[c] *= corr;
        for (int u = u0; u < u1; u++) {
            const float *v = qkv + (size_t)(u < nk ? k0 + u : q0 + u - nk) * width + voff;
            float p = expf(s[u - u0] - mn);
            l += p;
            for (int c = 0; c < HD; c++) acc[c] += p * v[c];
        }
        m = mn;
    }
    for (int c = 0; c < HD; c++) y[c] = acc[c] / l;
    if (lse) *lse = m + logf(l);
}

static void attention_varlen_forward_cpu(float *out, float *lse, const float *qkv, const int *segs, int S, int NH,
                                         int NKV, int HD, float scale, float softcap, int window) {
    int width = (NH + 2 * NKV) * HD, group = NH / NKV;
    float *acc = xmalloc(sizeof(float) * HD);
    for (int sg = 0; sg < S; sg++) {
        int q0 = segs[4 * sg], nq = segs[4 * sg + 1], k0 = segs[4 * sg + 2], nk = segs[4 * sg + 3];
        for (int i = 0; i < nq; i++) {
            size_t row = (size_t)q0 + i;
            for (int h = 0; h < NH; h++) {
                int kh = h / group;
                varlen_row(out + row * NH * HD + (size_t)h * HD, lse ? lse + row * NH + h : NULL,
                           qkv + row * width + (size_t)h * HD, qkv, width, (NH + kh) * HD, (NH + NKV + kh) * HD, q0,
                           k0, nk, i, HD, scale, softcap, window, acc);
            }
        }
    }
    free(acc);
}

/* One query row's backward (ops.h attention_varlen_backward): probabilities recomputed from lse, then
 * ds = p (dout.v - D) through the softcap, dq += ds scale k, dk += ds scale q, dv += p dout, key by key. */
static void varlen_row_backward(float *dqkv, float *dq, const float *dy, const float *q, const float *qkv, int width,
                                int koff, int voff, int q0, int k0, int nk, int i, int HD, float scale, float softcap,
                                int window, float lse, float D) {
    int last = nk + i, lo = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;
    for (int u = lo; u <= last; u++) {
        size_t krow = (size_t)(u < nk ? k0 + u : q0 + u - nk) * width;
        const float *k = qkv + krow + koff, *v = qkv + krow + voff;
        float *dk = dqkv + krow + koff, *dv = dqkv + krow + voff;
        float x = 0.0f, dp = 0.0f;
        for (int c = 0; c < HD; c++) x += q[c] * k[c], dp += dy[c] * v[c];
        x *= scale;
        float th = softcap > 0 ? tanhf(x / softcap) : 0.0f, s = softcap > 0 ? softcap * th : x;
        float p = expf(s - lse), ds = p * (dp - D) * (1.0f - th * th) * scale;
        for (int c = 0; c < HD; c++) {
            dq[c] += ds * k[c];
            dk[c] += ds * q[c];
            dv[c] += p * dy[c];
        }
    }
}

/* serial in a fixed order (segments, rows, heads): deterministic */
static void attention_varlen_backward_cpu(float *dqkv, const float *dout, const float *qkv, const float *out,
                                          const float *lse, const int *segs, int S, int NH, int NKV, int HD,
                                          float scale, float softcap, int window) {
    int width = (NH + 2 * NKV) * HD, group = NH / NKV;
    for (int sg = 0; sg < S; sg++) {
        int q0 = segs[4 * sg], nq = segs[4 * sg + 1], k0 = segs[4 * sg + 2], nk = segs[4 * sg + 3];
        for (int i = 0; i < nq; i++) {
            size_t row = (size_t)q0 + i;
            for (int h = 0; h < NH; h++) {
                const float *dy = dout + row * NH * HD + (size_t)h * HD, *y = out + row * NH * HD + (size_t)h * HD;
                float D = 0.0f;
                for (int c = 0; c < HD; c++) D += dy[c] * y[c];
                int kh = h / group;
                varlen_row_backward(dqkv, dqkv + row * width + (size_t)h * HD, dy, qkv + row * width + (size_t)h * HD,
                                    qkv, width, (NH + kh) * HD, (NH + NKV + kh) * HD, q0, k0, nk, i, HD, scale, softcap,
                                    window, lse[row * NH + h], D);
            }
        }
    }
}

/* ---- Qwen3 q/k norm: per token, the NH q heads and the NKV k heads are contiguous HD-rows ---- */
static void qknorm_forward_cpu(float *out, float *rstd, const float *inp, const float *qw, const float *kw, int N,
                               int NH, int NKV, int HD, float eps) {
    size_t width = (size_t)(NH + 2 * NKV) * HD;
    for (int n = 0; n < N; n++) {
        const float *x = inp + n * width;
        float *y = out + n * width, *r = rstd + (size_t)n * (NH + NKV);
        rmsnorm_forward_cpu(y, r, x, qw, NH, HD, eps);
        rmsnorm_forward_cpu(y + (size_t)NH * HD, r + NH, x + (size_t)NH * HD, kw, NKV, HD, eps);
        memcpy(y + (size_t)(NH + NKV) * HD, x + (size_t)(NH + NKV) * HD, sizeof(float) * NKV * HD);
    }
}

static void qknorm_backward_cpu(float *dinp, float *dqw, float *dkw, const float *dout, const float *inp,
                                const float *qw, const float *kw, const float *rstd, int N, int NH, int NKV, int HD) {
    size_t width = (size_t)(NH + 2 * NKV) * HD, v0 = (size_t)(NH + NKV) * HD;
    for (int n = 0; n < N; n++) {
        const float *x = inp + n * width, *dy = dout + n * width, *r = rstd + (size_t)n * (NH + NKV);
        float *dx = dinp + n * width;
        rmsnorm_backward_cpu(dx, dqw, dy, x, qw, r, NH, HD);
        rmsnorm_backward_cpu(dx + (size_t)NH * HD, dkw, dy + (size_t)NH * HD, x + (size_t)NH * HD, kw, r + NH, NKV, HD);
        for (size_t i = 0; i < (size_t)NKV * HD; i++) dx[v0 + i] += dy[v0 + i];
    }
}

/* ---- small elementwise ops of the optional table ---- */
static void geglu_forward_cpu(float *out, const float *inp, int N, int F) {
    for (int n = 0; n < N; n++) {
        const float *g = inp + (size_t)n * 2 * F;
        gelu_forward_cpu(out + (size_t)n * F, g, F);
        for (int f = 0; f < F; f++) out[(size_t)n * F + f] *= g[F + f];
    }
}
static void geglu_backward_cpu(float *dinp, const float *dout, const float *inp, int N, int F) {
    float *tmp = xmalloc(sizeof(float) * 2 * (size_t)F);
    for (int n = 0; n < N; n++) {
        const float *g = inp + (size_t)n * 2 * F, *dy = dout + (size_t)n * F;
        float *dg = dinp + (size_t)n * 2 * F;
        gelu_forward_cpu(tmp, g, F); /* d up = dy * gelu(gate); d gate = gelu'(gate) * dy * up */
        for (int f = 0; f < F; f++) {
            dg[F + f] += dy[f] * tmp[f];
            tmp[F + f] = dy[f] * g[F + f];
        }
        gelu_backward_cpu(dg, g, tmp + F, F);
    }
    free(tmp);
}
static void scale_forward_cpu(float *out, const float *inp, float s, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * s;
}
static void softcap_forward_cpu(float *out, const float *inp, float cap, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = cap * tanhf(inp[i] / cap);
}
static void softcap_backward_cpu(float *dinp, const float *dout, const float *out, float cap, size_t n) {
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * (1.0f - (out[i] / cap) * (out[i] / cap));
}
static void relu_forward_cpu(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}
static void relu_backward_cpu(float *dinp, const float *dout, const float *out, size_t n) {
    for (size_t i = 0; i < n; i++) dinp[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

/* ---- LoRA adapters ---- */
static void axpy_cols_cpu(float *y, int ldy, const float *x, int ldx, float s, int N, int W) {
    for (int n = 0; n < N; n++)
        for (int j = 0; j < W; j++) y[(size_t)n * ldy + j] += s * x[(size_t)n * ldx + j];
}
static void dropout_forward_cpu(float *out, const float *inp, size_t n, float p, uint64_t seed) {
    float keep_scale = 1.0f / (1.0f - p), thr = p * 16777216.0f;
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(rng_counter_u64(seed, i) >> 40) >= thr ? inp[i] * keep_scale : 0.0f;
}

/* ---- embeddings ---- */
static void embedding_forward_cpu(float *out, const int *ids, const float *wte, const float *wpe, int B, int T,
                                  int C) {
    for (int bt = 0; bt < B * T; bt++) {
        float *y = out + (size_t)bt * C;
        const float *e = wte + (size_t)ids[bt] * C;
        const float *p = wpe ? wpe + (size_t)(bt % T) * C : NULL;
        for (int c = 0; c < C; c++) y[c] = e[c] + (p ? p[c] : 0.0f);
    }
}
static void embedding_forward_bf16_cpu(float *out, const int *ids, const uint16_t *wte, const uint16_t *wpe, int B,
                                       int T, int C) {
    for (int bt = 0; bt < B * T; bt++) {
        float *y = out + (size_t)bt * C;
        const uint16_t *e = wte + (size_t)ids[bt] * C, *p = wpe ? wpe + (size_t)(bt % T) * C : NULL;
        for (int c = 0; c < C; c++) y[c] = bf16_to_f32(e[c]) + (p ? bf16_to_f32(p[c]) : 0.0f);
    }
}
static void embedding_backward_cpu(float *dwte, float *dwpe, const float *dout, const int *ids, int B, int T,
                                   int C) {
    for (int bt = 0; bt < B * T; bt++) { /* serial, fixed order: deterministic */
        const float *dy = dout + (size_t)bt * C;
        float *de = dwte + (size_t)ids[bt] * C;
        float *dp = dwpe ? dwpe + (size_t)(bt % T) * C : NULL;
        for (int c = 0; c < C; c++) {
            de[c] += dy[c];
            if (dp) dp[c] += dy[c];
        }
    }
}

/* ---- heads ---- */
static void gather_forward_cpu(float *out, const float *inp, const int *rows, int M, int C) {
    for (int m = 0; m < M; m++) memcpy(out + (size_t)m * C, inp + (size_t)rows[m] * C, sizeof(float) * C);
}
static void gather_backward_cpu(float *dinp, const float *dout, const int *rows, int M, int C) {
    for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++) dinp[(size_t)rows[m] * C + c] += dout[(size_t)m * C + c];
}

static void logprob_forward_cpu(float *logp, float *lse, const float *logits, const int *targets, int M, int V) {
    for (int m = 0; m < M; m++) {
        const float *x = logits + (size_t)m * V;
        float mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += expf(x[v] - mx);
        lse[m] = mx + (float)log(sum);
        logp[m] = x[targets[m]] - lse[m];
    }
}
static void logprob_backward_cpu(float *dlogits, const float *dlogp, const float *logits, const float *lse,
                                 const int *targets, int M, int V) {
    for (int m = 0; m < M; m++) {
        const float *x = logits + (size_t)m * V;
        float *dx = dlogits + (size_t)m * V, g = dlogp[m], l = lse[m];
        for (int v = 0; v < V; v++) dx[v] = -g * expf(x[v] - l); /* reads x[v] before writing dx[v]: alias-safe */
        dx[targets[m]] += g;
    }
}

/* A strong reference in CUDA builds: a weak one would not pull kernels/ out of the static library. */
#ifdef QUORUM_HAVE_CUDA
extern const Backend backend_cuda;
#endif
const Backend *backend_get(const char *name) {
    if (!name || !strcmp(name, "cpu")) return &backend_cpu;
#ifdef QUORUM_HAVE_CUDA
    if (!strcmp(name, "cuda")) return &backend_cuda;
#endif
    return NULL;
}

static void to_backend_cpu(void *dst, const void *src, size_t bytes) { copy_cpu(dst, src, bytes); }
static void to_host_cpu(void *dst, const void *src, size_t bytes) { copy_cpu(dst, src, bytes); }

const Backend backend_cpu = QUORUM_BACKEND_TABLE(cpu);
