/* test_model_lora.c - LoRA adapters in the model stage (quorum/model.h model_lora_attach; test_model.c's main
 * dispatches here):
 *   test_model lora <case_dir>   on a causal-LM fixture, through a backend that counts the gradient ops:
 *     - the base stays frozen: no base gradient buffer, every matmul_backward weight gradient lands in the adapter
 *       grads (2 per site: dA, dB), no norm weight gradient, no embedding backward (op count, no timing)
 *     - adapters at B = 0 and adapters OFF both give the base model's log-probs bit for bit (the reference)
 *     - dropout: TRAIN with one seed is reproducible, another seed or EVAL differs
 *     - dA, dB (TRAIN, dropout on, fixed mask) against central finite differences of the forward alone
 * The float64 torch replay of whole LoRA DPO runs (dropout masks included) is tests/train/ref_lora.py. */
#define _GNU_SOURCE
#define TEST_EXTERN_COUNTERS /* test_model.c (main) defines them */
#include "../test.h"
#include "model_fixture.h"
#include "quorum/common.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- a backend that counts who receives parameter gradients ---- */
static Backend CB;
static const float *g_lo, *g_hi; /* the adapter grad buffer */
static int n_dw_in, n_dw_out, n_norm_dw, n_embed;

static void count_dw(const float *dw) {
    if (!dw) return;
    if (dw >= g_lo && dw < g_hi) n_dw_in++;
    else n_dw_out++;
}
static void c_matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                              int N, int C, int OC) {
    count_dw(dw);
    count_dw(db);
    BE->matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
}
static void c_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                                 const float *mean, const float *rstd, int N, int C) {
    n_norm_dw += dw != NULL || db != NULL;
    BE->layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
static void c_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                               const float *rstd, int N, int C) {
    n_norm_dw += dw != NULL;
    BE->rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
}
static void c_qknorm_backward(float *dinp, float *dqw, float *dkw, const float *dout, const float *inp, const float *qw,
                              const float *kw, const float *rstd, int N, int NH, int NKV, int HD) {
    n_norm_dw += dqw != NULL || dkw != NULL;
    BE->qknorm_backward(dinp, dqw, dkw, dout, inp, qw, kw, rstd, N, NH, NKV, HD);
}
static void c_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *ids, int B, int T, int C) {
    n_embed++;
    BE->embedding_backward(dwte, dwpe, dout, ids, B, T, C);
}

static float *host_of(Model *m, const float *p, size_t n) {
    float *h = xmalloc(sizeof(float) * n);
    model_backend(m)->to_host(h, p, sizeof(float) * n);
    return h;
}

/* sum_b dseq[b] * logp[b] in double */
static double objective(Model *m, const Batch *b, float *out) {
    REQUIRE(model_logprobs(m, b->ids, b->lens, b->mask, b->B, b->T, out) == 0);
    double f = 0;
    for (int i = 0; i < b->B; i++) f += (double)b->dseq[i] * out[i];
    return f;
}

/* 1 when adapter element i is in some site's A (else in a B) */
static int in_A(const Model *m, size_t i) {
    int ns;
    const ModelLoraSite *S = model_lora_sites(m, &ns);
    for (int k = 0; k < ns; k++)
        if (i >= S[k].a && i < S[k].b) return 1;
    return 0;
}

/* dA, dB of one TRAIN backward vs central differences on the entries with the largest |gradient|, 3 in the As and
 * 3 in the Bs */
static void check_finite_differences(Model *m, const Batch *b, float *out, uint64_t seed) {
    size_t n = model_lora_n_params(m);
    float *p = host_of(m, model_lora_params(m), n), *g = host_of(m, model_lora_grads(m), n);
    const Backend *be = model_backend(m);
    for (int rep = 0; rep < 6; rep++) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < n; i++)
            if (in_A(m, i) == (rep < 3) && (best == SIZE_MAX || fabsf(g[i]) > fabsf(g[best]))) best = i;
        REQUIRE(best != SIZE_MAX && g[best] != 0);
        float keep = p[best], eps = 1e-2f * fmaxf(1.0f, fabsf(keep));
        model_lora_mode(m, MODEL_LORA_TRAIN, seed);
        p[best] = keep + eps;
        be->to_backend(model_lora_params(m), p, sizeof(float) * n);
        double fp = objective(m, b, out);
        p[best] = keep - eps;
        be->to_backend(model_lora_params(m), p, sizeof(float) * n);
        double fm = objective(m, b, out), fd = (fp - fm) / (2.0 * ((double)(keep + eps) - keep));
        p[best] = keep;
        be->to_backend(model_lora_params(m), p, sizeof(float) * n);
        double rel = fabs(fd - g[best]) / fmax(1e-3, fabs(fd));
        printf("  d/d%s[%zu]: backward %.6g, finite difference %.6g (rel %.2g)\n", rep < 3 ? "A" : "B", best, g[best], fd, rel);
        CHECKF(rel < 5e-3, "adapter grad %zu: %g vs finite difference %g", best, g[best], fd);
        g[best] = 0; /* next largest */
    }
    free(p);
    free(g);
}

/* bad configurations: -1 and one line naming the value */
static void check_attach_errors(Model *m) {
    struct { ModelLoraCfg c; const char *says; } bad[] = {
        {{.r = 0, .alpha = 8, .targets = "q_proj"}, "lora r=0"},
        {{.r = 4, .alpha = 0, .targets = "q_proj"}, "lora alpha=0"},
        {{.r = 4, .alpha = 8, .dropout = 1, .targets = "q_proj"}, "lora dropout=1: must be in [0, 1)"},
        {{.r = 4, .alpha = 8, .targets = "nope"}, "no 2-D weight of the policy matches"},
        {{.r = 4, .alpha = 8, .targets = "embed_tokens,wte"}, "not a trunk projection"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        capture_begin();
        int rc = model_lora_attach(m, &bad[i].c);
        char *msg = capture_end();
        int lines = 0;
        for (const char *c = msg; *c; c++) lines += *c == '\n';
        CHECKF(rc == -1 && strstr(msg, bad[i].says) && lines == 1 && model_lora_n_params(m) == 0,
               "attach error %zu: rc %d, message %s", i, rc, msg);
        free(msg);
    }
}

int cmd_lora(const char *case_dir) {
    CB = *BE;
    CB.matmul_backward = c_matmul_backward;
    CB.layernorm_backward = c_layernorm_backward;
    CB.rmsnorm_backward = c_rmsnorm_backward;
    if (BE->qknorm_backward) CB.qknorm_backward = c_qknorm_backward;
    CB.embedding_backward = c_embedding_backward;
    Model *m = NULL;
    REQUIRE(model_load(&m, case_dir, &CB) == 0);
    char *refp = path_join(case_dir, "ref.safetensors");
    SafeTensors st;
    REQUIRE(safetensors_open(&st, refp) == 0);
    Batch b;
    batch_load(&b, &st, m);
    float *base = xmalloc(sizeof(float) * b.B), *out = xmalloc(sizeof(float) * b.B), *out2 = xmalloc(sizeof(float) * b.B);
    REQUIRE(model_logprobs(m, b.ids, b.lens, b.mask, b.B, b.T, base) == 0);

    check_attach_errors(m);
    ModelLoraCfg lc = {.r = 4, .alpha = 8, .dropout = 0.25f, .seed = 7,
                       .targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,c_attn,c_proj,c_fc"};
    REQUIRE(model_lora_attach(m, &lc) == 0);
    int ns;
    const ModelLoraSite *sites = model_lora_sites(m, &ns);
    size_t n = model_lora_n_params(m);
    printf("%s: %d adapter sites, %zu adapter params\n", case_dir, ns, n);
    CHECK(ns == 4 * model_config(m)->n_layer || ns == 7 * model_config(m)->n_layer);
    CHECK_NAMED("base grad buffer absent", model_grads(m) == NULL);
    CHECK(sites[0].a == 0 && sites[ns - 1].b + (size_t)(sites[ns - 1].out * lc.r) == n);
    CHECK(model_lora_attach(m, &lc) == -1); /* once */

    REQUIRE(model_logprobs(m, b.ids, b.lens, b.mask, b.B, b.T, out) == 0);
    CHECK_NAMED("B = 0: the base's log-probs bit for bit", !memcmp(out, base, sizeof(float) * b.B));

    /* random adapters (B != 0), then OFF = the frozen base = the DPO reference */
    Rng rng;
    rng_seed(&rng, 11, 0);
    float *h = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) h[i] = 0.2f * (2 * rng_uniform(&rng) - 1);
    CB.to_backend(model_lora_params(m), h, sizeof(float) * n);
    model_lora_mode(m, MODEL_LORA_OFF, 0);
    REQUIRE(model_logprobs(m, b.ids, b.lens, b.mask, b.B, b.T, out) == 0);
    CHECK_NAMED("OFF: the base's log-probs bit for bit", !memcmp(out, base, sizeof(float) * b.B));
    model_lora_mode(m, MODEL_LORA_EVAL, 0);
    REQUIRE(model_logprobs(m, b.ids, b.lens, b.mask, b.B, b.T, out) == 0);
    double moved = 0;
    for (int i = 0; i < b.B; i++) moved = fmax(moved, fabs(out[i] - base[i]));
    CHECKF(moved > 1e-3, "EVAL with B != 0 moves the log-probs (%g)", moved);

    /* dropout masks: reproducible from the seed, and they bite */
    model_lora_mode(m, MODEL_LORA_TRAIN, 99);
    REQUIRE(model_logprobs(m, b.ids, b.lens, b.mask, b.B, b.T, out2) == 0);
    model_lora_mode(m, MODEL_LORA_TRAIN, 99);
    float *again = xmalloc(sizeof(float) * b.B);
    REQUIRE(model_logprobs(m, b.ids, b.lens, b.mask, b.B, b.T, again) == 0);
    CHECK_NAMED("TRAIN: same seed, same masks", !memcmp(again, out2, sizeof(float) * b.B));
    CHECK_NAMED("TRAIN differs from EVAL (dropout on)", memcmp(out, out2, sizeof(float) * b.B) != 0);
    model_lora_mode(m, MODEL_LORA_TRAIN, 100);
    REQUIRE(model_logprobs(m, b.ids, b.lens, b.mask, b.B, b.T, again) == 0);
    CHECK_NAMED("TRAIN: another seed, other masks", memcmp(again, out2, sizeof(float) * b.B) != 0);

    /* one TRAIN backward: every weight gradient is an adapter's */
    g_lo = model_lora_grads(m), g_hi = g_lo + n;
    model_zero_grad(m);
    model_lora_mode(m, MODEL_LORA_TRAIN, 99);
    REQUIRE(model_logprobs(m, b.ids, b.lens, b.mask, b.B, b.T, out) == 0);
    n_dw_in = n_dw_out = n_norm_dw = n_embed = 0;
    REQUIRE(model_backward(m, b.dseq) == 0);
    printf("  backward: %d weight grads into the adapters, %d elsewhere, %d norm weight grads, %d embedding backwards\n",
           n_dw_in, n_dw_out, n_norm_dw, n_embed);
    CHECK_NAMED("2 weight grads per site, all adapters'", n_dw_in == 2 * ns && n_dw_out == 0);
    CHECK_NAMED("no norm / embedding gradient", n_norm_dw == 0 && n_embed == 0);
    CHECK(model_grads(m) == NULL);
    check_finite_differences(m, &b, out, 99);

    free(h), free(base), free(out), free(out2), free(again);
    batch_free(&b);
    safetensors_close(&st);
    free(refp);
    model_free(m);
    TEST_MAIN_END();
}
