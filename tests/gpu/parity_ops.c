/*
 * tests/gpu/parity_ops.c - every op of the Backend table, cuda vs cpu on the same random inputs.
 * Each case runs ONE function per backend (no duplicated code paths): forward outputs start as NaN,
 * accumulating gradients start random and the test compares the increments, so an op that overwrites
 * instead of accumulating (or skips elements) fails.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "quorum/cuda_backend.h"
#include "quorum/common.h"
#include "quorum/train.h"
#define TEST_EXTERN_COUNTERS
#include "../test.h"
#include "parity.h"

static Rng R;

/* Two results per output: res[0] from cpu, res[1] from cuda. */
typedef struct { float *r[2]; } Pair;
static void pair_check(const char *what, Pair *p, size_t n, double tol) {
    check_close(what, p->r[1], p->r[0], n, tol);
    free(p->r[0]);
    free(p->r[1]);
}
/* Downloads the increment dev - init as backend k's result. */
static void take_delta(Pair *p, int k, Arena *a, const float *dev, const float *init, size_t n) {
    p->r[k] = a_down(a, dev, n);
    sub_inplace(p->r[k], init, n);
}

static void case_matmul(int N, int C, int OC, int with_bias, int bf16) {
    float *inp = rnd(&R, (size_t)N * C, 1), *w = rnd(&R, (size_t)OC * C, 0.2f), *b = rnd(&R, OC, 0.5f);
    float *dout = rnd(&R, (size_t)N * OC, 1), *g_inp = rnd(&R, (size_t)N * C, 1);
    float *g_w = rnd(&R, (size_t)OC * C, 1), *g_b = rnd(&R, OC, 1);
    Pair out, dinp, dw, db;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        if (k == 1) cuda_matmul_use_bf16(bf16);
        float *d_out = a_nan(&a, (size_t)N * OC), *d_dinp = a_up(&a, g_inp, (size_t)N * C);
        float *d_dw = a_up(&a, g_w, (size_t)OC * C), *d_db = a_up(&a, g_b, OC);
        float *d_inp = a_up(&a, inp, (size_t)N * C), *d_w = a_up(&a, w, (size_t)OC * C);
        float *d_b = with_bias ? a_up(&a, b, OC) : NULL, *d_dout = a_up(&a, dout, (size_t)N * OC);
        BE[k]->matmul_forward(d_out, d_inp, d_w, d_b, N, C, OC);
        BE[k]->matmul_backward(d_dinp, d_dw, with_bias ? d_db : NULL, d_dout, d_inp, d_w, N, C, OC);
        out.r[k] = a_down(&a, d_out, (size_t)N * OC);
        take_delta(&dinp, k, &a, d_dinp, g_inp, (size_t)N * C);
        take_delta(&dw, k, &a, d_dw, g_w, (size_t)OC * C);
        if (with_bias) take_delta(&db, k, &a, d_db, g_b, OC);
        if (k == 1) cuda_matmul_use_bf16(0);
        arena_free(&a);
    }
    double tol = bf16 ? TOL_BF16 : TOL_FP32;
    char name[96];
    snprintf(name, sizeof name, "matmul%s%s.out", with_bias ? "+bias" : "", bf16 ? ".bf16" : "");
    pair_check(name, &out, (size_t)N * OC, tol);
    snprintf(name, sizeof name, "matmul%s.dinp", bf16 ? ".bf16" : "");
    pair_check(name, &dinp, (size_t)N * C, tol);
    snprintf(name, sizeof name, "matmul%s.dweight", bf16 ? ".bf16" : "");
    pair_check(name, &dw, (size_t)OC * C, tol);
    if (with_bias) pair_check("matmul.dbias", &db, OC, tol);
    free(inp); free(w); free(b); free(dout); free(g_inp); free(g_w); free(g_b);
}

/* backend copy of bf16 host data, freed with the arena */
static uint16_t *a_up_u16(Arena *a, const uint16_t *host, size_t n) {
    uint16_t *d = a->be->alloc(sizeof(uint16_t) * n);
    a->be->to_backend(d, host, sizeof(uint16_t) * n);
    a->p[a->n++] = d;
    return d;
}

/* bf16 copies of N(0, scale^2) values (truncated: what a BF16 safetensors file could hold) */
static uint16_t *rnd_bf16(size_t n, float scale) {
    float *x = rnd(&R, n, scale);
    uint16_t *h = malloc(sizeof(uint16_t) * n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        h[i] = (uint16_t)(u >> 16);
    }
    free(x);
    return h;
}

/* bf16-weight linear layer and embedding (inference loads): cuBLASLt bf16 GEMM (activations rounded to bf16)
 * vs the cpu panels widened to fp32 */
static void case_bf16_weights(int N, int C, int OC, int with_bias) {
    float *inp = rnd(&R, (size_t)N * C, 1), *b = rnd(&R, OC, 0.5f);
    uint16_t *w = rnd_bf16((size_t)OC * C, 0.2f);
    int V = 11, T = 5, B = 3, ids[15];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 7) % V;
    Pair out, emb;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        float *d_out = a_nan(&a, (size_t)N * OC), *d_inp = a_up(&a, inp, (size_t)N * C);
        float *d_b = with_bias ? a_up(&a, b, OC) : NULL, *d_emb = a_nan(&a, (size_t)B * T * C);
        uint16_t *d_w = a_up_u16(&a, w, (size_t)OC * C);
        int *d_ids = a_up_i(&a, ids, (size_t)B * T);
        BE[k]->matmul_forward_bf16(d_out, d_inp, d_w, d_b, N, C, OC);
        BE[k]->embedding_forward_bf16(d_emb, d_ids, d_w, d_w + (size_t)V * C, B, T, C); /* wte, wpe = rows of w */
        out.r[k] = a_down(&a, d_out, (size_t)N * OC);
        emb.r[k] = a_down(&a, d_emb, (size_t)B * T * C);
        arena_free(&a);
    }
    char name[96];
    snprintf(name, sizeof name, "matmul_forward_bf16%s(N=%d,C=%d,OC=%d).out", with_bias ? "+bias" : "", N, C, OC);
    pair_check(name, &out, (size_t)N * OC, TOL_BF16);
    pair_check("embedding_forward_bf16.out", &emb, (size_t)B * T * C, TOL_FP32);
    free(inp); free(b); free(w);
}

/* flash attention over a packed stream: segments with and without a shared prefix, GQA, softcap and window;
 * out and logsumexp vs the cpu twin (the same blocked online softmax in another order), and the backward's dqkv
 * increment (from each backend's own forward; dQ, and dK/dV of prefix rows seen by several segments) */
static void case_attention_varlen(int NH, int NKV, int HD, float softcap, int window) {
    /* stream: prefix A (9 rows), two continuations of A (5, 12), a plain sequence (40), prefix B (33), one
     * continuation of B (3) */
    int segs[] = {0, 9, 0, 0, 9, 5, 0, 9, 14, 12, 0, 9, 26, 40, 0, 0, 66, 33, 0, 0, 99, 3, 66, 33};
    int S = 6, N = 102;
    size_t nqkv = (size_t)N * (NH + 2 * NKV) * HD, nout = (size_t)N * NH * HD;
    float *qkv = rnd(&R, nqkv, 1), scale = 1.0f / sqrtf((float)HD);
    float *dout = rnd(&R, nout, 1), *g_qkv = rnd(&R, nqkv, 1);
    Pair out, lse, dqkv;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        float *d_qkv = a_up(&a, qkv, nqkv), *d_out = a_nan(&a, nout), *d_lse = a_nan(&a, (size_t)N * NH);
        float *d_dout = a_up(&a, dout, nout), *d_dqkv = a_up(&a, g_qkv, nqkv);
        int *d_segs = a_up_i(&a, segs, 4 * (size_t)S);
        BE[k]->attention_varlen_forward(d_out, d_lse, d_qkv, d_segs, S, NH, NKV, HD, scale, softcap, window);
        BE[k]->attention_varlen_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_segs, S, NH, NKV, HD, scale, softcap,
                                         window);
        out.r[k] = a_down(&a, d_out, nout);
        lse.r[k] = a_down(&a, d_lse, (size_t)N * NH);
        take_delta(&dqkv, k, &a, d_dqkv, g_qkv, nqkv);
        arena_free(&a);
    }
    char name[128];
    snprintf(name, sizeof name, "attention_varlen(NH=%d,NKV=%d,HD=%d,softcap=%g,window=%d).out", NH, NKV, HD, softcap,
             window);
    pair_check(name, &out, nout, TOL_FP32);
    snprintf(name, sizeof name, "attention_varlen(NH=%d,NKV=%d,HD=%d).lse", NH, NKV, HD);
    pair_check(name, &lse, (size_t)N * NH, TOL_FP32);
    snprintf(name, sizeof name, "attention_varlen_backward(NH=%d,NKV=%d,HD=%d,softcap=%g,window=%d).dqkv", NH, NKV,
             HD, softcap, window);
    pair_check(name, &dqkv, nqkv, TOL_FP32);
    free(qkv), free(dout), free(g_qkv);
}

/* layernorm (rms = 0) or rmsnorm (rms = 1), forward and backward */
static void case_norm(int rms, int N, int C) {
    float *inp = rnd(&R, (size_t)N * C, 2), *w = rnd(&R, C, 1), *b = rnd(&R, C, 1);
    float *dout = rnd(&R, (size_t)N * C, 1), *g_inp = rnd(&R, (size_t)N * C, 1);
    float *g_w = rnd(&R, C, 1), *g_b = rnd(&R, C, 1);
    for (size_t i = 0; i < (size_t)N * C; i++) inp[i] += 0.5f; /* non-zero mean per row */
    Pair out, rstd, mean, dinp, dw, db;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        float *d_inp = a_up(&a, inp, (size_t)N * C), *d_w = a_up(&a, w, C), *d_b = a_up(&a, b, C);
        float *d_out = a_nan(&a, (size_t)N * C), *d_mean = a_nan(&a, N), *d_rstd = a_nan(&a, N);
        float *d_dout = a_up(&a, dout, (size_t)N * C), *d_dinp = a_up(&a, g_inp, (size_t)N * C);
        float *d_dw = a_up(&a, g_w, C), *d_db = a_up(&a, g_b, C);
        if (rms) {
            BE[k]->rmsnorm_forward(d_out, d_rstd, d_inp, d_w, N, C, 1e-6f);
            BE[k]->rmsnorm_backward(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, C);
        } else {
            BE[k]->layernorm_forward(d_out, d_mean, d_rstd, d_inp, d_w, d_b, N, C, 1e-5f);
            BE[k]->layernorm_backward(d_dinp, d_dw, d_db, d_dout, d_inp, d_w, d_mean, d_rstd, N, C);
            mean.r[k] = a_down(&a, d_mean, N);
            take_delta(&db, k, &a, d_db, g_b, C);
        }
        out.r[k] = a_down(&a, d_out, (size_t)N * C);
        rstd.r[k] = a_down(&a, d_rstd, N);
        take_delta(&dinp, k, &a, d_dinp, g_inp, (size_t)N * C);
        take_delta(&dw, k, &a, d_dw, g_w, C);
        arena_free(&a);
    }
    const char *n = rms ? "rmsnorm" : "layernorm";
    char name[64];
    snprintf(name, sizeof name, "%s.out", n); pair_check(name, &out, (size_t)N * C, TOL_FP32);
    snprintf(name, sizeof name, "%s.rstd", n); pair_check(name, &rstd, N, TOL_FP32);
    snprintf(name, sizeof name, "%s.dinp", n); pair_check(name, &dinp, (size_t)N * C, TOL_FP32);
    snprintf(name, sizeof name, "%s.dweight", n); pair_check(name, &dw, C, TOL_FP32);
    if (!rms) {
        pair_check("layernorm.mean", &mean, N, TOL_FP32);
        pair_check("layernorm.dbias", &db, C, TOL_FP32);
    }
    free(inp); free(w); free(b); free(dout); free(g_inp); free(g_w); free(g_b);
}

/* residual (forward only: no backward op), gelu and swiglu: all elementwise over n = N*F (swiglu reads (N,2F)) */
static void case_elementwise(int N, int F) {
    size_t n = (size_t)N * F;
    float *x1 = rnd(&R, 2 * n, 2), *x2 = rnd(&R, n, 1), *dout = rnd(&R, n, 1);
    float *g1 = rnd(&R, 2 * n, 1);
    Pair res, gelu, dgelu, swi, dswi;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        const Backend *be = BE[k];
        float *d_x1 = a_up(&a, x1, 2 * n), *d_x2 = a_up(&a, x2, n), *d_dout = a_up(&a, dout, n);
        float *d_out = a_nan(&a, n), *d_g1 = a_up(&a, g1, 2 * n);
        be->residual_forward(d_out, d_x1, d_x2, n);
        res.r[k] = a_down(&a, d_out, n);
        float *d_gelu = a_nan(&a, n);
        be->to_backend(d_g1, g1, 2 * n * sizeof(float));
        be->gelu_forward(d_gelu, d_x1, n);
        be->gelu_backward(d_g1, d_x1, d_dout, n);
        gelu.r[k] = a_down(&a, d_gelu, n);
        take_delta(&dgelu, k, &a, d_g1, g1, n);
        float *d_sw = a_nan(&a, n);
        be->to_backend(d_g1, g1, 2 * n * sizeof(float));
        be->swiglu_forward(d_sw, d_x1, N, F);
        be->swiglu_backward(d_g1, d_dout, d_x1, N, F);
        swi.r[k] = a_down(&a, d_sw, n);
        take_delta(&dswi, k, &a, d_g1, g1, 2 * n);
        arena_free(&a);
    }
    pair_check("residual.out", &res, n, TOL_FP32);
    pair_check("gelu.out", &gelu, n, TOL_FP32);
    pair_check("gelu.dinp", &dgelu, n, TOL_FP32);
    pair_check("swiglu.out", &swi, n, TOL_FP32);
    pair_check("swiglu.dinp", &dswi, 2 * n, TOL_FP32);
    free(x1); free(x2); free(dout); free(g1);
}

static void case_rope(int B, int T, int NH, int NKV, int HD) {
    size_t n = (size_t)B * T * (NH + 2 * NKV) * HD, nt = (size_t)T * HD / 2;
    float *qkv = rnd(&R, n, 1), *cs = xmalloc(nt * sizeof(float)), *sn = xmalloc(nt * sizeof(float));
    for (size_t i = 0; i < nt; i++) {
        float ang = 3.0f * rng_normal(&R);
        cs[i] = cosf(ang);
        sn[i] = sinf(ang);
    }
    Pair fwd, bwd;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        float *d = a_up(&a, qkv, n), *d_c = a_up(&a, cs, nt), *d_s = a_up(&a, sn, nt);
        BE[k]->rope_forward(d, d_c, d_s, B, T, NH, NKV, HD);
        fwd.r[k] = a_down(&a, d, n);
        BE[k]->rope_backward(d, d_c, d_s, B, T, NH, NKV, HD);
        bwd.r[k] = a_down(&a, d, n);
        arena_free(&a);
    }
    /* backward is the inverse rotation: forward then backward must give qkv back */
    check_close("rope.backward(forward(x)) == x", bwd.r[1], qkv, n, TOL_FP32);
    pair_check("rope.forward", &fwd, n, TOL_FP32);
    pair_check("rope.backward", &bwd, n, TOL_FP32);
    free(qkv); free(cs); free(sn);
}

/* att is compared too: backend_cuda keeps the probabilities in it, like cpu (ops.h allows less).
 * scale == 0: attention_forward/backward; else attention_ex_* with scale, softcap and window. */
static void case_attention(int B, int T, int NH, int NKV, int HD, const int *lens, float scale, float softcap,
                           int window) {
    size_t nqkv = (size_t)B * T * (NH + 2 * NKV) * HD, nout = (size_t)B * T * NH * HD, natt = (size_t)B * NH * T * T;
    float *qkv = rnd(&R, nqkv, 1), *dout = rnd(&R, nout, 1), *g = rnd(&R, nqkv, 1);
    Pair out, att, dqkv;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        float *d_qkv = a_up(&a, qkv, nqkv), *d_out = a_nan(&a, nout), *d_att = a_nan(&a, natt);
        float *d_datt = a_nan(&a, natt), *d_dout = a_up(&a, dout, nout), *d_g = a_up(&a, g, nqkv);
        int *d_lens = a_up_i(&a, lens, B);
        if (scale == 0) {
            BE[k]->attention_forward(d_out, d_att, d_qkv, d_lens, B, T, NH, NKV, HD);
            BE[k]->attention_backward(d_g, d_datt, d_dout, d_qkv, d_att, d_lens, B, T, NH, NKV, HD);
        } else {
            BE[k]->attention_ex_forward(d_out, d_att, d_qkv, d_lens, B, T, NH, NKV, HD, scale, softcap, window);
            BE[k]->attention_ex_backward(d_g, d_datt, d_dout, d_qkv, d_att, d_lens, B, T, NH, NKV, HD, scale,
                                         softcap, window);
        }
        out.r[k] = a_down(&a, d_out, nout);
        att.r[k] = a_down(&a, d_att, natt);
        take_delta(&dqkv, k, &a, d_g, g, nqkv);
        arena_free(&a);
    }
    char name[128], tag[96];
    snprintf(tag, sizeof tag, "attention%s(NH=%d,NKV=%d,softcap=%g,window=%d)", scale ? "_ex" : "", NH, NKV, softcap,
             window);
    snprintf(name, sizeof name, "%s.out", tag); pair_check(name, &out, nout, TOL_FP32);
    snprintf(name, sizeof name, "%s.att", tag); pair_check(name, &att, natt, TOL_FP32);
    snprintf(name, sizeof name, "%s.dqkv", tag); pair_check(name, &dqkv, nqkv, TOL_FP32);
    free(qkv); free(dout); free(g);
}

/* Qwen3 q/k norm: per-head RMSNorm of the q and k parts, v copied; backward += incl. the v pass-through */
static void case_qknorm(int N, int NH, int NKV, int HD) {
    size_t n = (size_t)N * (NH + 2 * NKV) * HD, nr = (size_t)N * (NH + NKV);
    float *x = rnd(&R, n, 2), *qw = rnd(&R, HD, 1), *kw = rnd(&R, HD, 1), *dout = rnd(&R, n, 1);
    float *g = rnd(&R, n, 1), *gq = rnd(&R, HD, 1), *gk = rnd(&R, HD, 1);
    Pair out, rstd, dx, dq, dk;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        float *d_x = a_up(&a, x, n), *d_qw = a_up(&a, qw, HD), *d_kw = a_up(&a, kw, HD), *d_dout = a_up(&a, dout, n);
        float *d_out = a_nan(&a, n), *d_rstd = a_nan(&a, nr), *d_g = a_up(&a, g, n);
        float *d_gq = a_up(&a, gq, HD), *d_gk = a_up(&a, gk, HD);
        BE[k]->qknorm_forward(d_out, d_rstd, d_x, d_qw, d_kw, N, NH, NKV, HD, 1e-6f);
        BE[k]->qknorm_backward(d_g, d_gq, d_gk, d_dout, d_x, d_qw, d_kw, d_rstd, N, NH, NKV, HD);
        out.r[k] = a_down(&a, d_out, n);
        rstd.r[k] = a_down(&a, d_rstd, nr);
        take_delta(&dx, k, &a, d_g, g, n);
        take_delta(&dq, k, &a, d_gq, gq, HD);
        take_delta(&dk, k, &a, d_gk, gk, HD);
        arena_free(&a);
    }
    pair_check("qknorm.out", &out, n, TOL_FP32);
    pair_check("qknorm.rstd", &rstd, nr, TOL_FP32);
    pair_check("qknorm.dinp", &dx, n, TOL_FP32);
    pair_check("qknorm.dqw", &dq, HD, TOL_FP32);
    pair_check("qknorm.dkw", &dk, HD, TOL_FP32);
    free(x); free(qw); free(kw); free(dout); free(g); free(gq); free(gk);
}

/* GeGLU, scale, softcap (backward overwrites), ReLU (backward +=) over n = N*F */
static void case_optional_elementwise(int N, int F) {
    size_t n = (size_t)N * F;
    float *x = rnd(&R, 2 * n, 2), *dout = rnd(&R, n, 1), *g = rnd(&R, 2 * n, 1);
    Pair geglu, dgeglu, scl, cap, dcap, relu, drelu;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        const Backend *be = BE[k];
        float *d_x = a_up(&a, x, 2 * n), *d_dout = a_up(&a, dout, n), *d_g = a_up(&a, g, 2 * n), *d_y = a_nan(&a, n);
        be->geglu_forward(d_y, d_x, N, F);
        be->geglu_backward(d_g, d_dout, d_x, N, F);
        geglu.r[k] = a_down(&a, d_y, n);
        take_delta(&dgeglu, k, &a, d_g, g, 2 * n);
        be->scale_forward(d_y, d_x, 1.7f, n);
        scl.r[k] = a_down(&a, d_y, n);
        be->softcap_forward(d_y, d_x, 1.5f, n);
        cap.r[k] = a_down(&a, d_y, n);
        float *d_d = a_nan(&a, n);
        be->softcap_backward(d_d, d_dout, d_y, 1.5f, n);
        dcap.r[k] = a_down(&a, d_d, n);
        be->relu_forward(d_y, d_x, n);
        be->to_backend(d_g, g, 2 * n * sizeof(float));
        be->relu_backward(d_g, d_dout, d_y, n);
        relu.r[k] = a_down(&a, d_y, n);
        take_delta(&drelu, k, &a, d_g, g, n);
        arena_free(&a);
    }
    pair_check("geglu.out", &geglu, n, TOL_FP32);
    pair_check("geglu.dinp", &dgeglu, 2 * n, TOL_FP32);
    pair_check("scale.out", &scl, n, TOL_FP32);
    pair_check("softcap.out", &cap, n, TOL_FP32);
    pair_check("softcap.dinp", &dcap, n, TOL_FP32);
    pair_check("relu.out", &relu, n, TOL_FP32);
    pair_check("relu.dinp", &drelu, n, TOL_FP32);
    free(x); free(dout); free(g);
}

/* LoRA: axpy_cols into a column slice of a wider matrix, and the counter-based dropout mask (the same mask on both
 * backends: a differing element would be off by a whole value, far beyond the tolerance) */
static void case_lora(int N, int W, int ld) {
    size_t n = (size_t)N * ld;
    float *y = rnd(&R, n, 1), *x = rnd(&R, (size_t)N * W, 1);
    Pair axpy, drop;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        const Backend *be = BE[k];
        float *d_y = a_up(&a, y, n), *d_x = a_up(&a, x, (size_t)N * W), *d_o = a_nan(&a, n);
        be->axpy_cols(d_y + 3, ld, d_x, W, 0.7f, N, W);
        axpy.r[k] = a_down(&a, d_y, n);
        be->dropout_forward(d_o, d_y, n, 0.3f, 0x1234567887654321ULL);
        drop.r[k] = a_down(&a, d_o, n);
        arena_free(&a);
    }
    pair_check("lora.axpy_cols", &axpy, n, TOL_FP32);
    pair_check("lora.dropout", &drop, n, TOL_FP32);
    free(y); free(x);
}

static void case_embedding(int B, int T, int C, int V, int with_wpe) {
    size_t n = (size_t)B * T * C;
    int *ids = xmalloc(sizeof(int) * B * T);
    for (int i = 0; i < B * T; i++) ids[i] = (int)rng_below(&R, V); /* B*T > V: many repeats */
    float *wte = rnd(&R, (size_t)V * C, 1), *wpe = rnd(&R, (size_t)T * C, 1), *dout = rnd(&R, n, 1);
    float *gte = rnd(&R, (size_t)V * C, 1), *gpe = rnd(&R, (size_t)T * C, 1);
    Pair out, dte, dpe;
    float *again = NULL;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        int *d_ids = a_up_i(&a, ids, (size_t)B * T);
        float *d_out = a_nan(&a, n), *d_wte = a_up(&a, wte, (size_t)V * C), *d_wpe = with_wpe ? a_up(&a, wpe, (size_t)T * C) : NULL;
        float *d_dout = a_up(&a, dout, n), *d_gte = a_up(&a, gte, (size_t)V * C), *d_gpe = a_up(&a, gpe, (size_t)T * C);
        BE[k]->embedding_forward(d_out, d_ids, d_wte, d_wpe, B, T, C);
        BE[k]->embedding_backward(d_gte, with_wpe ? d_gpe : NULL, d_dout, d_ids, B, T, C);
        out.r[k] = a_down(&a, d_out, n);
        take_delta(&dte, k, &a, d_gte, gte, (size_t)V * C);
        if (with_wpe) take_delta(&dpe, k, &a, d_gpe, gpe, (size_t)T * C);
        if (k == 1) { /* determinism: a second backward from the same start is bit-identical */
            BE[k]->to_backend(d_gte, gte, (size_t)V * C * sizeof(float));
            BE[k]->embedding_backward(d_gte, NULL, d_dout, d_ids, B, T, C);
            again = a_down(&a, d_gte, (size_t)V * C);
            sub_inplace(again, gte, (size_t)V * C);
        }
        arena_free(&a);
    }
    CHECK_NAMED("embedding.dwte deterministic (bitwise)", !memcmp(again, dte.r[1], (size_t)V * C * sizeof(float)));
    pair_check(with_wpe ? "embedding+wpe.out" : "embedding.out", &out, n, TOL_FP32);
    pair_check("embedding.dwte", &dte, (size_t)V * C, TOL_FP32);
    if (with_wpe) pair_check("embedding.dwpe", &dpe, (size_t)T * C, TOL_FP32);
    free(ids); free(wte); free(wpe); free(dout); free(gte); free(gpe); free(again);
}

static void case_gather(int N, int M, int C) {
    int *rows = xmalloc(sizeof(int) * N);
    for (int i = 0; i < N; i++) rows[i] = i;
    for (int i = N - 1; i > 0; i--) { /* shuffle: the first M are distinct random rows */
        int j = (int)rng_below(&R, i + 1), t = rows[i];
        rows[i] = rows[j];
        rows[j] = t;
    }
    float *inp = rnd(&R, (size_t)N * C, 1), *dout = rnd(&R, (size_t)M * C, 1), *g = rnd(&R, (size_t)N * C, 1);
    Pair out, din;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        int *d_rows = a_up_i(&a, rows, M);
        float *d_out = a_nan(&a, (size_t)M * C), *d_inp = a_up(&a, inp, (size_t)N * C);
        float *d_dout = a_up(&a, dout, (size_t)M * C), *d_g = a_up(&a, g, (size_t)N * C);
        BE[k]->gather_forward(d_out, d_inp, d_rows, M, C);
        BE[k]->gather_backward(d_g, d_dout, d_rows, M, C);
        out.r[k] = a_down(&a, d_out, (size_t)M * C);
        take_delta(&din, k, &a, d_g, g, (size_t)N * C);
        arena_free(&a);
    }
    pair_check("gather.out", &out, (size_t)M * C, TOL_FP32);
    pair_check("gather.dinp", &din, (size_t)N * C, TOL_FP32);
    free(rows); free(inp); free(dout); free(g);
}

/* logprob forward + backward, the backward once into a NaN-poisoned buffer and once in place */
static void case_logprob(int M, int V) {
    size_t n = (size_t)M * V;
    float *logits = rnd(&R, n, 3), *dlogp = rnd(&R, M, 1);
    int *tg = xmalloc(sizeof(int) * M);
    for (int m = 0; m < M; m++) tg[m] = (int)rng_below(&R, V);
    Pair logp, lse, dl, dl_inplace;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        float *d_logits = a_up(&a, logits, n), *d_logp = a_nan(&a, M), *d_lse = a_nan(&a, M);
        float *d_dlogp = a_up(&a, dlogp, M), *d_dl = a_nan(&a, n);
        int *d_tg = a_up_i(&a, tg, M);
        BE[k]->logprob_forward(d_logp, d_lse, d_logits, d_tg, M, V);
        BE[k]->logprob_backward(d_dl, d_dlogp, d_logits, d_lse, d_tg, M, V);
        logp.r[k] = a_down(&a, d_logp, M);
        lse.r[k] = a_down(&a, d_lse, M);
        dl.r[k] = a_down(&a, d_dl, n);
        BE[k]->logprob_backward(d_logits, d_dlogp, d_logits, d_lse, d_tg, M, V);
        dl_inplace.r[k] = a_down(&a, d_logits, n);
        arena_free(&a);
    }
    /* in place must equal out of place, bit for bit */
    CHECK_NAMED("logprob.backward in place == out of place", !memcmp(dl.r[1], dl_inplace.r[1], n * sizeof(float)));
    pair_check("logprob.logp", &logp, M, TOL_FP32);
    pair_check("logprob.lse", &lse, M, TOL_FP32);
    pair_check("logprob.dlogits", &dl, n, TOL_FP32);
    pair_check("logprob.dlogits (in place)", &dl_inplace, n, TOL_FP32);
    free(logits); free(dlogp); free(tg);
}

/* the trainer's AdamW (TrainOps.adamw) of each backend, with a weight-decay mask of uneven runs */
static void case_adamw(size_t n, int steps) {
    const TrainOps *TO[2] = {&train_ops_cpu, &train_ops_cuda};
    float *p = rnd(&R, n, 1), *m = rnd(&R, n, 0.01f), *v = rnd(&R, n, 0.01f);
    uint8_t *decay = xmalloc(n);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]), decay[i] = (i / 97) % 3 != 0;
    OptimCfg o;
    optim_defaults(&o);
    o.weight_decay = 0.01f;
    Pair pp, mm, vv;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        float *d_p = a_up(&a, p, n), *d_m = a_up(&a, m, n), *d_v = a_up(&a, v, n);
        for (int s = 1; s <= steps; s++) {
            Rng gr;
            rng_seed(&gr, 99, (uint64_t)s); /* same gradients on both backends */
            float *g = rnd(&gr, n, 1);
            float *d_g = a_up(&a, g, n);
            TO[k]->adamw(d_p, d_g, d_m, d_v, decay, n, 1e-2f, 1.0f, &o, s);
            free(g);
        }
        pp.r[k] = a_down(&a, d_p, n);
        mm.r[k] = a_down(&a, d_m, n);
        vv.r[k] = a_down(&a, d_v, n);
        arena_free(&a);
    }
    sub_inplace(pp.r[0], p, n); /* compare the parameter change, not the parameters */
    sub_inplace(pp.r[1], p, n);
    pair_check("adamw.dparams (3 steps)", &pp, n, TOL_FP32);
    pair_check("adamw.m", &mm, n, TOL_FP32);
    pair_check("adamw.v", &vv, n, TOL_FP32);
    free(p); free(m); free(v); free(decay);
}

void test_ops(void) {
    rng_seed(&R, 1234, 0);
    printf("ops: backend_cuda vs backend_cpu (norm-wise relative error)\n");
    case_matmul(70, 96, 130, 1, 0);
    case_matmul(33, 64, 1, 0, 0); /* the reward head: OC = 1, no bias */
    case_matmul(70, 96, 130, 1, 1);
    case_norm(0, 50, 200);
    case_norm(1, 50, 200);
    case_elementwise(13, 77);
    case_rope(2, 9, 4, 2, 16);
    const int lens1[3] = {17, 9, 1}, lens2[2] = {40, 33};
    case_attention(3, 17, 4, 2, 16, lens1, 0, 0, 0); /* GQA */
    case_attention(3, 17, 4, 1, 8, lens1, 0, 0, 0);  /* multi-query */
    case_attention(2, 40, 2, 2, 32, lens2, 0, 0, 0); /* MHA, T > 32 */
    case_attention(3, 17, 4, 2, 16, lens1, 0.3f, 2.0f, 5); /* Gemma-2: scale, softcap, window */
    case_attention(2, 40, 2, 2, 32, lens2, 0.17f, 0, 7);   /* Mistral: window only */
    case_qknorm(37, 4, 2, 16);
    case_optional_elementwise(13, 77);
    case_lora(37, 20, 50);
    case_embedding(4, 25, 40, 13, 1);
    case_embedding(3, 7, 33, 5, 0);
    case_gather(60, 17, 48);
    case_logprob(7, 1000);
    case_logprob(3, 50257);
    case_adamw(10007, 3);
    case_bf16_weights(70, 96, 130, 1);
    case_bf16_weights(257, 512, 1000, 0);
    case_attention_varlen(4, 2, 16, 0, 0);     /* GQA */
    case_attention_varlen(8, 1, 64, 0, 0);     /* multi-query, several key tiles */
    case_attention_varlen(4, 4, 128, 2.0f, 7); /* softcap + window */
    case_attention_varlen(2, 1, 256, 0, 24);   /* Gemma head_dim 256: the > 48 KiB shared-memory opt-in */
    case_attention_varlen(2, 2, 80, 0, 0);     /* head_dim not a multiple of 32 */
}
