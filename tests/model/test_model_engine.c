/* test_model_engine.c - the scoring engine's inference paths (test_model.c's main dispatches here):
 *   test_model packed <case_dir> [inference]  packed + shared-prefix scoring (model_reward_packed) vs plain scoring
 *                                             and the torch reference
 *   test_model bf16_ops                       matmul_forward_bf16 / embedding_forward_bf16 vs float64 sums
 *   test_model flash_backward <dir>           attention_varlen_forward/backward vs ref_flash.py (float64 autograd)
 *   test_model packed_lm <case_dir>           model_logprobs_packed + model_backward vs torch and the padded path
 *   test_model recompute <case_dir>           model_set_recompute: bit-identical grads, less activation memory */
#define _GNU_SOURCE
#define TEST_EXTERN_COUNTERS /* test_model.c (main) defines them */
#include "../test.h"
#include "model_fixture.h"
#include "quorum/common.h"

#include <math.h>
#include <string.h>

/* rewards of sequences seqs/lens through model_reward one padded batch (the T^2 attention of a training load) */
static void plain_rewards(Model *m, int32_t **seqs, const int *lens, int n, float *out) {
    int T = 0;
    for (int s = 0; s < n; s++) T = lens[s] > T ? lens[s] : T;
    int32_t *ids = xcalloc((size_t)n * T, sizeof(int32_t));
    for (int s = 0; s < n; s++) memcpy(ids + (size_t)s * T, seqs[s], sizeof(int32_t) * lens[s]);
    REQUIRE(model_reward(m, ids, lens, n, T, out) == 0);
    free(ids);
}

/* packed (budgets that split and that do not split the batch) x (sharing on / off) vs plain and vs torch */
static void check_packed_variants(Model *m, int32_t **seqs, const int *lens, int n, const float *plain,
                                  const float *torch_out, const char *label) {
    int total = 0, longest = 0;
    for (int s = 0; s < n; s++) total += lens[s], longest = lens[s] > longest ? lens[s] : longest;
    float *got = xmalloc(sizeof(float) * n);
    for (int share = 0; share <= 1; share++)
        for (int split = 0; split <= 1; split++) {
            ModelPackOpts o = {.token_budget = split ? longest + longest / 2 : total, .share_pairs = share};
            ModelPackStats ps;
            poison(got, n);
            REQUIRE(model_reward_packed(m, (const int32_t *const *)seqs, lens, n, &o, got, &ps) == 0);
            double ep = max_rel(got, plain, n), et = torch_out ? max_rel(got, torch_out, n) : 0;
            printf("  %s packed share=%d budget=%d: %lld forwards, %lld tokens, %lld shared; max rel err vs plain "
                   "%.3g, vs torch %.3g\n", label, share, o.token_budget, (long long)ps.forwards, (long long)ps.tokens,
                   (long long)ps.shared_tokens, ep, et);
            CHECKF(ep < 1e-5 && et < 1e-4, "%s share=%d split=%d: vs plain %.3g vs torch %.3g", label, share, split, ep, et);
            CHECK(ps.tokens + ps.shared_tokens == total && (share || ps.shared_tokens == 0));
            CHECK(!split || ps.forwards > 1);
        }
    free(got);
}

/* Packed + shared-prefix scoring (model_reward_packed) equals plain scoring: on the fixture's rows (HH pairs
 * (2k, 2k+1) for the *_hh_* cases, with their real template and left truncation), and on pairs made to share
 * a prefix of every length from 0 to the whole shorter sequence. */
int cmd_packed(const char *case_dir, int inference) {
    Model *m = NULL;
    ModelLoadOpts lo = {.inference = inference}; /* inference: a bf16 file stays bf16, plain = flash attention too */
    SafeTensors st;
    Batch b;
    if (fixture_open(case_dir, &lo, &m, &st, &b)) return 77;
    int n = b.B;
    if (model_config(m)->reward_head == RHEAD_ARMO) { /* gating rows need the padded layout: refused, one line */
        float r[64];
        const int32_t *one[1] = {b.ids};
        CHECK(model_reward_packed(m, one, b.lens, 1, NULL, r, NULL) == -1);
        batch_free(&b);
        safetensors_close(&st);
        model_free(m);
        TEST_MAIN_END();
    }
    int32_t **seqs = xmalloc(sizeof(int32_t *) * 2 * n);
    int *lens = xmalloc(sizeof(int) * 2 * n);
    float *plain = xmalloc(sizeof(float) * 2 * n);
    for (int s = 0; s < n; s++) {
        lens[s] = b.lens[s];
        seqs[s] = xmalloc(sizeof(int32_t) * b.T);
        memcpy(seqs[s], b.ids + (size_t)s * b.T, sizeof(int32_t) * b.lens[s]);
    }
    plain_rewards(m, seqs, lens, n, plain);
    check_packed_variants(m, seqs, lens, n, plain, b.out, "fixture rows");
    /* synthetic pairs: row s and a copy of its first k tokens followed by other tokens, k = 0 .. lens[s] */
    for (int s = 0; s < n; s++) {
        int k = (int)((long)lens[s] * s / (n - 1)), len2 = k + 1 + s % 3;
        seqs[n + s] = xmalloc(sizeof(int32_t) * len2);
        memcpy(seqs[n + s], seqs[s], sizeof(int32_t) * k);
        for (int t = k; t < len2; t++) seqs[n + s][t] = (seqs[s][t % lens[s]] + 1 + t) % model_config(m)->vocab_size;
        lens[n + s] = len2;
    }
    int32_t **pairs = xmalloc(sizeof(int32_t *) * 2 * n);
    int *plens = xmalloc(sizeof(int) * 2 * n);
    for (int s = 0; s < n; s++) pairs[2 * s] = seqs[s], pairs[2 * s + 1] = seqs[n + s], plens[2 * s] = lens[s],
                                plens[2 * s + 1] = lens[n + s];
    model_set_grad_enabled(m, 1); /* plain = the T^2 path of a training load */
    plain_rewards(m, pairs, plens, 2 * n, plain);
    check_packed_variants(m, pairs, plens, 2 * n, plain, NULL, "prefix pairs");
    for (int s = 0; s < 2 * n; s++) free(seqs[s]);
    free(seqs), free(lens), free(plain), free(pairs), free(plens);
    batch_free(&b);
    safetensors_close(&st);
    model_free(m);
    TEST_MAIN_END();
}

float bf16_widen(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* matmul_forward_bf16 (a C wide enough for several weight panels, with bias, both GEMM paths) and
 * embedding_forward_bf16 against float64 sums of the widened weights. */
int cmd_bf16_ops(void) {
    if (!BE->matmul_forward_bf16) {
        printf("backend %s has no bf16 ops: skipped\n", BE->name);
        return 77;
    }
    enum { N = 3, C = 70001, OC = 40, V = 7, T = 2 };
    uint16_t *w = xmalloc(sizeof(uint16_t) * OC * C);
    float *x = xmalloc(sizeof(float) * N * C), bias[OC], out[N * OC];
    uint32_t st = 12345;
    for (size_t i = 0; i < (size_t)OC * C; i++) { /* random bf16 in about [-2, 2] */
        st = st * 1664525u + 1013904223u;
        w[i] = (uint16_t)(0x3c00u + (st >> 20) % 0x400u) | (uint16_t)((st >> 8) & 1u) << 15;
    }
    for (size_t i = 0; i < (size_t)N * C; i++) x[i] = (float)sin(0.37 * (double)i);
    for (int o = 0; o < OC; o++) bias[o] = 0.25f * (float)o - 3.0f;
    uint16_t *dw = BE->alloc(sizeof(uint16_t) * OC * C);
    float *dx = BE->alloc(sizeof(float) * N * C), *db = BE->alloc(sizeof bias), *dout = BE->alloc(sizeof out);
    BE->to_backend(dw, w, sizeof(uint16_t) * OC * C);
    BE->to_backend(dx, x, sizeof(float) * N * C);
    BE->to_backend(db, bias, sizeof bias);
    for (int blas = 1; blas >= 0; blas--) {
        int prev = backend_cpu_use_blas(blas);
        poison(out, N * OC);
        BE->matmul_forward_bf16(dout, dx, dw, db, N, C, OC);
        BE->to_host(out, dout, sizeof out);
        double worst = 0;
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                double ref = bias[o], mag = fabs(bias[o]);
                for (int c = 0; c < C; c++) {
                    double t = (double)bf16_widen(w[(size_t)o * C + c]) * x[(size_t)n * C + c];
                    ref += t, mag += fabs(t);
                }
                double e = fabs(out[n * OC + o] - ref) / mag; /* relative to the sum of |terms| */
                worst = !(e <= worst) ? e : worst;
            }
        printf("matmul_forward_bf16 (%s): worst err / sum|terms| %.3g\n", blas ? "blas" : "loop", worst);
        CHECKF(worst < 1e-5, "matmul_forward_bf16 %s: %.3g", blas ? "blas" : "loop", worst);
        backend_cpu_use_blas(prev);
    }
    int ids[T] = {5, 2}, *did = BE->alloc(sizeof ids);
    float emb[T * 16], *demb = BE->alloc(sizeof emb);
    BE->to_backend(did, ids, sizeof ids);
    BE->embedding_forward_bf16(demb, did, dw, dw + (size_t)V * 16, 1, T, 16); /* wte (V,16), wpe after it */
    BE->to_host(emb, demb, sizeof emb);
    int same = 1;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < 16; c++)
            same &= emb[t * 16 + c] == bf16_widen(w[ids[t] * 16 + c]) + bf16_widen(w[(size_t)V * 16 + t * 16 + c]);
    CHECK(same);
    BE->free(dw), BE->free(dx), BE->free(db), BE->free(dout), BE->free(did), BE->free(demb);
    free(w), free(x);
    TEST_MAIN_END();
}

/* ---------------------------------------------------------------- flash attention backward (op level) */

/* to the backend, fp32 */
static float *up(const float *h, size_t n) {
    float *d = BE->alloc(sizeof(float) * (n + 1));
    BE->to_backend(d, h, sizeof(float) * n);
    return d;
}

/* One ref_flash.py case: forward (out, lse) and backward (dqkv0 + grad) vs float64 autograd; the backward twice
 * from the same dqkv0 is bit-identical (deterministic). */
static void flash_case(const char *path) {
    SafeTensors st;
    REQUIRE(safetensors_open(&st, path) == 0);
    int64_t nw, no, S4;
    float *qkv = ref_get(&st, "qkv", &nw), *dout = ref_get(&st, "dout", &no), *dq0 = ref_get(&st, "dqkv0", NULL);
    float *segf = ref_get(&st, "segs", &S4), *dims = ref_get(&st, "dims", NULL);
    float *want_out = ref_get(&st, "out", NULL), *want_lse = ref_get(&st, "lse", NULL), *want = ref_get(&st, "dqkv", NULL);
    int NH = (int)dims[0], NKV = (int)dims[1], HD = (int)dims[2], window = (int)dims[5], S = (int)(S4 / 4);
    float scale = dims[3], softcap = dims[4];
    size_t N = (size_t)(no / ((int64_t)NH * HD));
    int *segs = xmalloc(sizeof(int) * 4 * S);
    for (int i = 0; i < 4 * S; i++) segs[i] = (int)segf[i];
    float *d_qkv = up(qkv, nw), *d_dout = up(dout, no), *d_out = BE->alloc(sizeof(float) * no);
    float *d_lse = BE->alloc(sizeof(float) * N * NH), *d_dqkv = up(dq0, nw);
    int *d_segs = BE->alloc(sizeof(int) * 4 * S);
    BE->to_backend(d_segs, segs, sizeof(int) * 4 * S);
    BE->attention_varlen_forward(d_out, d_lse, d_qkv, d_segs, S, NH, NKV, HD, scale, softcap, window);
    float *got = xmalloc(sizeof(float) * nw), *again = xmalloc(sizeof(float) * nw), *o = xmalloc(sizeof(float) * no);
    float *l = xmalloc(sizeof(float) * N * NH);
    BE->to_host(o, d_out, sizeof(float) * no);
    BE->to_host(l, d_lse, sizeof(float) * N * NH);
    BE->attention_varlen_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_segs, S, NH, NKV, HD, scale, softcap, window);
    poison(got, nw);
    BE->to_host(got, d_dqkv, sizeof(float) * nw);
    BE->to_backend(d_dqkv, dq0, sizeof(float) * nw);
    BE->attention_varlen_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_segs, S, NH, NKV, HD, scale, softcap, window);
    BE->to_host(again, d_dqkv, sizeof(float) * nw);
    double eo = max_rel(o, want_out, no), el = max_rel(l, want_lse, N * NH), eg = max_rel(got, want, nw);
    size_t moved = 0; /* the gradient itself must be there, not just dqkv0 */
    for (int64_t i = 0; i < nw; i++) moved += fabsf(got[i] - dq0[i]) > 1e-3f;
    printf("  %s: N=%zu S=%d NH=%d NKV=%d HD=%d softcap=%g window=%d: max rel err vs torch out %.3g lse %.3g "
           "dqkv %.3g (%zu of %lld elements moved); rerun bit-identical %d\n", path, N, S, NH, NKV, HD, softcap,
           window, eo, el, eg, moved, (long long)nw, !memcmp(got, again, sizeof(float) * nw));
    CHECKF(eo < 1e-5 && el < 1e-5 && eg < 2e-5, "%s: out %.3g lse %.3g dqkv %.3g", path, eo, el, eg);
    CHECKF(moved > (size_t)nw / 2, "%s: only %zu of %lld gradient elements differ from dqkv0", path, moved, (long long)nw);
    CHECKF(!memcmp(got, again, sizeof(float) * nw), "%s: backward not deterministic", path);
    BE->free(d_qkv), BE->free(d_dout), BE->free(d_out), BE->free(d_lse), BE->free(d_dqkv), BE->free(d_segs);
    free(qkv), free(dout), free(dq0), free(segf), free(dims), free(want_out), free(want_lse), free(want), free(segs);
    free(got), free(again), free(o), free(l);
    safetensors_close(&st);
}

/* attention_varlen_forward + attention_varlen_backward against ref_flash.py's float64 autograd, every case in dir */
int cmd_flash_backward(const char *dir) {
    static const char *cases[] = {"plain", "prefix_gqa", "window_softcap", "long_hd40", "long_window"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[64];
        snprintf(name, sizeof name, "flash_%s.safetensors", cases[i]);
        char *p = path_join(dir, name);
        flash_case(p);
        free(p);
    }
    TEST_MAIN_END();
}

/* ---------------------------------------------------------------- packed causal-LM training forward */

static float *grads_host(Model *m) {
    size_t np = model_n_params(m);
    float *g = xmalloc(sizeof(float) * np);
    model_backend(m)->to_host(g, model_grads(m), sizeof(float) * np);
    return g;
}

/* packed forward + backward of seqs (sharing on/off) from zero grads; returns the grads (host) */
static float *packed_lm_grads(Model *m, int32_t **seqs, const int *lens, uint8_t **masks, int n, int share,
                              const float *dseq, float *logp, ModelPackStats *ps) {
    ModelPackOpts o = {.token_budget = 1, .share_pairs = share}; /* budget ignored with grads: one forward */
    model_zero_grad(m);
    poison(logp, n);
    REQUIRE(model_logprobs_packed(m, (const int32_t *const *)seqs, lens, (const uint8_t *const *)masks, n, &o, logp,
                                  ps) == 0);
    REQUIRE(model_backward(m, dseq) == 0);
    return grads_host(m);
}

/* model_logprobs_packed + model_backward: on the fixture's rows against torch (log-probs and every gradient,
 * sharing on and off: the *_hh_* rows are real pairs sharing their prompt), and on pairs made to share a prefix of
 * every length (masks starting at or after the shared part) against the padded model_logprobs + model_backward. */
int cmd_packed_lm(const char *case_dir) {
    Model *m = NULL;
    SafeTensors st;
    Batch b;
    if (fixture_open(case_dir, NULL, &m, &st, &b)) return 77;
    int n = b.B, T = b.T, V = model_config(m)->vocab_size;
    int32_t **seqs = xmalloc(sizeof(int32_t *) * 2 * n);
    uint8_t **masks = xmalloc(sizeof(uint8_t *) * 2 * n);
    int *lens = xmalloc(sizeof(int) * 2 * n);
    float *logp = xmalloc(sizeof(float) * 2 * n), *plain = xmalloc(sizeof(float) * 2 * n), dseq[128];
    ModelPackStats ps;
    for (int s = 0; s < n; s++) seqs[s] = b.ids + (size_t)s * T, masks[s] = b.mask + (size_t)s * T, lens[s] = b.lens[s];
    for (int share = 0; share <= 1; share++) {
        float *g = packed_lm_grads(m, seqs, lens, masks, n, share, b.dseq, logp, &ps);
        double e = max_rel(logp, b.out, n);
        printf("  fixture rows share=%d: %lld tokens, %lld shared; max rel err vs torch %.3g\n", share,
               (long long)ps.tokens, (long long)ps.shared_tokens, e);
        CHECKF(e < 1e-4, "share=%d: logp vs torch %.3g", share, e);
        check_grads(m, &st, share ? "packed shared" : "packed");
        free(g);
    }
    /* pairs (row s, its first k tokens + another tail), k = 0 .. lens[s]; the partner's mask starts where row s's
     * does, one later for odd s (the shared rows then serve one sequence or both) */
    for (int s = 0; s < n; s++) {
        int k = (int)((long)lens[s] * s / (n - 1)), len2 = k + 2 + s % 3, m0 = 1;
        while (m0 < lens[s] - 1 && !masks[s][m0]) m0++;
        seqs[n + s] = xmalloc(sizeof(int32_t) * len2);
        masks[n + s] = xcalloc(len2, 1);
        memcpy(seqs[n + s], seqs[s], sizeof(int32_t) * k);
        for (int t = k; t < len2; t++) seqs[n + s][t] = (seqs[s][t % lens[s]] + 1 + t) % V;
        for (int t = m0 + s % 2; t < len2; t++) masks[n + s][t] = 1;
        lens[n + s] = len2;
    }
    int32_t **pairs = xmalloc(sizeof(int32_t *) * 2 * n);
    uint8_t **pmasks = xmalloc(sizeof(uint8_t *) * 2 * n);
    int *plens = xmalloc(sizeof(int) * 2 * n), Tp = 0;
    for (int s = 0; s < 2 * n; s++) {
        int src = s % 2 ? n + s / 2 : s / 2;
        pairs[s] = seqs[src], pmasks[s] = masks[src], plens[s] = lens[src];
        Tp = plens[s] > Tp ? plens[s] : Tp;
        dseq[s] = (float)(0.3 * ((s * 7) % 5) - 0.6); /* any dLoss/dlogp: the backward is linear in it */
    }
    int32_t *ids = xcalloc((size_t)2 * n * Tp, sizeof(int32_t));
    uint8_t *mask = xcalloc((size_t)2 * n * Tp, 1);
    for (int s = 0; s < 2 * n; s++) {
        memcpy(ids + (size_t)s * Tp, pairs[s], sizeof(int32_t) * plens[s]);
        memcpy(mask + (size_t)s * Tp, pmasks[s], plens[s]);
    }
    model_zero_grad(m);
    REQUIRE(model_logprobs(m, ids, plens, mask, 2 * n, Tp, plain) == 0);
    REQUIRE(model_backward(m, dseq) == 0);
    float *gp = grads_host(m);
    for (int share = 0; share <= 1; share++) {
        float *g = packed_lm_grads(m, pairs, plens, pmasks, 2 * n, share, dseq, logp, &ps);
        double e = max_rel(logp, plain, 2 * n), eg = norm_rel(g, gp, model_n_params(m));
        printf("  prefix pairs share=%d: %lld tokens, %lld shared; vs padded: logp max rel err %.3g, grads norm-rel "
               "err %.3g\n", share, (long long)ps.tokens, (long long)ps.shared_tokens, e, eg);
        CHECKF(e < 1e-5 && eg < 1e-5, "prefix pairs share=%d: logp %.3g grads %.3g", share, e, eg);
        CHECK(share ? ps.shared_tokens > 0 : ps.shared_tokens == 0);
        free(g);
    }
    /* bad input: -1 after one line naming the field (a wrong id, no masks) */
    int32_t keep = seqs[0][1];
    seqs[0][1] = V;
    capture_begin();
    int rc_id = model_logprobs_packed(m, (const int32_t *const *)seqs, lens, (const uint8_t *const *)masks, n, NULL,
                                      logp, NULL);
    char *msg_id = capture_end();
    seqs[0][1] = keep;
    capture_begin();
    int rc_mask = model_logprobs_packed(m, (const int32_t *const *)seqs, lens, NULL, n, NULL, logp, NULL);
    char *msg_mask = capture_end();
    CHECKF(rc_id == -1 && strstr(msg_id, "seqs[0][1]"), "bad id: rc %d, message %s", rc_id, msg_id);
    CHECKF(rc_mask == -1 && strstr(msg_mask, "masks"), "no masks: rc %d, message %s", rc_mask, msg_mask);
    free(msg_id), free(msg_mask);
    for (int s = n; s < 2 * n; s++) free(seqs[s]), free(masks[s]);
    free(gp), free(ids), free(mask), free(pairs), free(pmasks), free(plens), free(seqs), free(masks), free(lens);
    free(logp), free(plain);
    batch_free(&b);
    safetensors_close(&st);
    model_free(m);
    TEST_MAIN_END();
}

/* ---------------------------------------------------------------- activation recomputation */

/* forward (padded, or packed with shared pairs for an LM when `packed`) + backward of the fixture batch from zero
 * grads: outputs into out (B), grads returned (host), activation bytes into *bytes */
static float *fwd_bwd(Model *m, const Batch *b, int packed, float *out, size_t *bytes) {
    model_zero_grad(m);
    poison(out, b->B);
    if (packed) {
        const int32_t *seqs[64];
        const uint8_t *masks[64];
        for (int s = 0; s < b->B; s++) seqs[s] = b->ids + (size_t)s * b->T, masks[s] = b->mask + (size_t)s * b->T;
        ModelPackOpts o = {.share_pairs = 1};
        REQUIRE(model_logprobs_packed(m, seqs, b->lens, masks, b->B, &o, out, NULL) == 0);
    } else {
        REQUIRE((b->is_rm ? model_reward(m, b->ids, b->lens, b->B, b->T, out)
                          : model_logprobs(m, b->ids, b->lens, b->mask, b->B, b->T, out)) == 0);
    }
    *bytes = model_activation_bytes(m);
    REQUIRE(model_backward(m, b->dseq) == 0);
    return grads_host(m);
}

/* model_set_recompute: outputs and every gradient bit-identical to the stored-activation run (padded, and packed
 * for an LM), gradients equal to torch's, and less activation memory. */
int cmd_recompute(const char *case_dir) {
    Model *m = NULL;
    SafeTensors st;
    Batch b;
    if (fixture_open(case_dir, NULL, &m, &st, &b)) return 77;
    REQUIRE(b.B <= 64);
    size_t np = model_n_params(m);
    float out0[64], out1[64];
    for (int packed = 0; packed <= !b.is_rm; packed++) {
        size_t a0, a1;
        model_set_recompute(m, 0);
        float *g0 = fwd_bwd(m, &b, packed, out0, &a0);
        model_set_recompute(m, 1);
        float *g1 = fwd_bwd(m, &b, packed, out1, &a1);
        int same_out = !memcmp(out0, out1, sizeof(float) * b.B), same_g = !memcmp(g0, g1, sizeof(float) * np);
        printf("  %s: outputs bit-identical %d, %zu grads bit-identical %d; activations %zu -> %zu bytes (%.2fx)\n",
               packed ? "packed" : "padded", same_out, np, same_g, a0, a1, (double)a0 / a1);
        CHECKF(same_out && same_g, "%s: recompute changed outputs (%d) or grads (%d)", packed ? "packed" : "padded",
               same_out, same_g);
        CHECKF(a1 < a0, "%s: activations %zu -> %zu bytes", packed ? "packed" : "padded", a0, a1);
        CHECKF(max_rel(out1, b.out, b.B) < 1e-4, "outputs vs torch %.3g", max_rel(out1, b.out, b.B));
        check_grads(m, &st, packed ? "packed recompute vs torch" : "recompute vs torch");
        free(g0);
        free(g1);
    }
    batch_free(&b);
    safetensors_close(&st);
    model_free(m);
    TEST_MAIN_END();
}
