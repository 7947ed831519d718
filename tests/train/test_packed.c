/* test_packed.c - packed DPO micro-batches (train_model_set_packed: a pair's prompt computed once) against the
 * unpacked (padded) forward of the same TrainModel: per-pair log-probs, the DPO loss and every parameter gradient
 * of one micro-batch. packed_dpo.py runs it on tiny gpt2 / llama (GQA) / gemma2 (window + softcap) policies.
 *
 * usage: test_packed POLICY_DIR CORPUS_DIR|- MAX_LENGTH MAX_PROMPT_LENGTH
 *   CORPUS_DIR: pairs rendered with the policy's chat template (real HH pairs); "-": random token pairs, the two
 *   responses of some pairs starting alike (the sharing then reaches into the completions). */
#include "../../src/train/internal.h"
#include "../test.h"
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/tokpairs.h"

#include <math.h>
#include <mpi.h>
#include <string.h>

enum { MICRO = 6 }; /* pairs in the micro-batch */

static void random_pairs(TokPairs *d, int V) {
    Rng r;
    rng_seed(&r, 11, 0);
    int32_t p[24], c[20], j[20];
    for (int i = 0; i < MICRO; i++) {
        int np = 3 + (int)(rng_u64(&r) % 20), nc = 1 + (int)(rng_u64(&r) % 20), nr = 1 + (int)(rng_u64(&r) % 20);
        int same = i % 2 ? (int)(rng_u64(&r) % 6) : 0; /* responses starting with `same` equal tokens */
        for (int t = 0; t < np; t++) p[t] = (int32_t)(rng_u64(&r) % V);
        for (int t = 0; t < 20; t++) c[t] = (int32_t)(rng_u64(&r) % V), j[t] = t < same ? c[t] : (int32_t)(rng_u64(&r) % V);
        tokpairs_push(d, i, p, np, c, nc, j, nr, 64, 32);
    }
}

static double norm_rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

/* forward, DPO loss (sigmoid, beta 0.1, fixed reference values), backward: out (2b), grads (n_params) */
static double step(TrainModel *tm, const int32_t *ids, const int *lens, const uint8_t *mask, int b, int T,
                   const float *ref, float *out, float *grads) {
    float dout[2 * MICRO];
    tm->zero_grad(tm);
    tm->forward(tm, ids, lens, mask, 2 * b, T, out);
    DpoLossCfg c = {.type = DPO_SIGMOID, .beta = 0.1f};
    DpoBatch x = {b, out, out + b, ref, ref + b, NULL, NULL};
    DpoGrads g = {dout, dout + b, NULL, NULL};
    PairMetrics met = {0};
    double loss = dpo_loss(&c, &x, 1.0f / b, &g, &met);
    tm->backward(tm, dout);
    model_backend(tm->impl)->to_host(grads, tm->grads, sizeof(float) * tm->n_params);
    return loss;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: test_packed POLICY_DIR CORPUS_DIR|- MAX_LENGTH MAX_PROMPT_LENGTH\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    TrainModel tm;
    REQUIRE(train_model_open(&tm, argv[1], 0) == 0);
    TokPairs d = {0};
    if (strcmp(argv[2], "-")) {
        PairsLoadCfg pc = {.corpus_dirs = argv[2], .model_dir = argv[1], .max_length = atoi(argv[3]),
                           .max_prompt_length = atoi(argv[4])};
        REQUIRE(pairs_load(&d, &pc) == 0);
    } else {
        random_pairs(&d, model_config(tm.impl)->vocab_size);
    }
    int b = d.n < MICRO ? (int)d.n : MICRO;
    REQUIRE(b >= 2);
    int64_t idx[MICRO];
    for (int i = 0; i < b; i++) idx[i] = i;
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int *lens = NULL;
    size_t cap = 0;
    int T = batch_build(&d, idx, b, &ids, &mask, &lens, &cap);
    int shared = 0, tokens = 0; /* what packing saves: the common prefix of each pair (less one token) */
    for (int i = 0; i < b; i++) {
        int n = 0;
        while (n < lens[i] && n < lens[i + b] && ids[(size_t)i * T + n] == ids[(size_t)(i + b) * T + n]) n++;
        shared += n > 1 ? n - 1 : 0;
        tokens += lens[i] + lens[i + b];
    }
    float out_u[2 * MICRO], out_p[2 * MICRO], ref[2 * MICRO];
    float *g_u = xmalloc(sizeof(float) * tm.n_params), *g_p = xmalloc(sizeof(float) * tm.n_params);
    tm.forward(&tm, ids, lens, mask, 2 * b, T, out_u); /* reference log-probs: the policy, moved off its own values */
    for (int j = 0; j < 2 * b; j++) ref[j] = out_u[j] + (float)(0.7 * ((j * 5) % 7) - 2.1);
    double loss_u = step(&tm, ids, lens, mask, b, T, ref, out_u, g_u);
    REQUIRE(train_model_set_packed(&tm) == 0);
    double loss_p = step(&tm, ids, lens, mask, b, T, ref, out_p, g_p);
    double el = 0, eg = norm_rel(g_p, g_u, tm.n_params), ew = 0, gmax = 0;
    for (int j = 0; j < 2 * b; j++) el = fmax(el, fabs((double)out_p[j] - out_u[j]) / fmax(1.0, fabs(out_u[j])));
    for (size_t i = 0; i < tm.n_params; i++) ew = fmax(ew, fabs((double)g_p[i] - g_u[i])), gmax = fmax(gmax, fabs(g_u[i]));
    const ModelConfig *mc = model_config(tm.impl);
    printf("%s (%s, NH=%d NKV=%d window=%d softcap=%g): %d pairs, T=%d, %d tokens, %d shared by packing; "
           "log-probs max rel err %.3g (chosen[0] %.4f vs %.4f); loss %.9f vs %.9f (abs %.3g); grads norm-rel err "
           "%.3g, max abs %.3g (max |g| %.3g)\n", argv[1], mc->architecture, mc->n_head, mc->n_kv_head,
           mc->sliding_window, mc->attn_softcap, b, T, tokens, shared, el, out_p[0], out_u[0], loss_p, loss_u,
           fabs(loss_p - loss_u), eg, ew, gmax);
    CHECKF(shared > 0, "no pair shares a prefix: packing not exercised");
    CHECKF(el < 2e-6, "log-probs: max rel err %.3g (fp32 rounding: < 2e-6)", el);
    CHECKF(fabs(loss_p - loss_u) < 1e-6 * fmax(1.0, fabs(loss_u)), "loss %.9g vs %.9g", loss_p, loss_u);
    CHECKF(eg < 1e-5, "grads: norm-rel err %.3g (fp32 rounding: < 1e-5)", eg);
    free(ids), free(mask), free(lens), free(g_u), free(g_p);
    tokpairs_free(&d);
    train_model_close(&tm);
    MPI_Finalize();
    TEST_MAIN_END();
}
