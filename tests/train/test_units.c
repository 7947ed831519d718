/* test_units.c - dumps the pure training functions' outputs on random inputs as JSON lines for
 * ref_units.py, which recomputes them with torch (autograd for the loss gradients, torch.optim.AdamW +
 * clip_grad_norm_ for the optimizer). Truncation is checked here against hand-worked cases. */
#include "../test.h"
#include "quorum/train.h"

#include <string.h>

static void dump(const char *key, const float *x, int n) {
    if (key) printf("\"%s\":", key);
    printf("[");
    for (int i = 0; i < n; i++) printf("%s%.9g", i ? "," : "", x[i]);
    printf("]");
}

static void fill(Rng *r, float *x, int n, float mu, float sd) {
    for (int i = 0; i < n; i++) x[i] = mu + sd * rng_normal(r);
}

enum { B = 16 };

/* Every DPO loss on random log-prob sums and completion lengths, at two (beta, label_smoothing) settings
 * where the loss takes label smoothing. Gradients poisoned with NaN first. */
static void dump_losses(Rng *r) {
    for (int t = 0; t < DPO_N_LOSSES; t++)
        for (int s = 0; s < 2; s++) {
            float pc[B], pr[B], rc[B], rr[B], nc[B], nr[B], g[4][B];
            fill(r, pc, B, -40, 10); fill(r, pr, B, -40, 10);
            for (int i = 0; i < B; i++) {
                rc[i] = pc[i] + 3 * rng_normal(r); rr[i] = pr[i] + 3 * rng_normal(r);
                nc[i] = (float)(1 + rng_below(r, 60)); nr[i] = (float)(1 + rng_below(r, 60));
            }
            memset(g, 0xff, sizeof g); /* NaN poison */
            DpoLossCfg c = {.type = (DpoLoss)t, .beta = 0.1f + 0.2f * s, .discopop_tau = 0.05f + 0.5f * s};
            const float smooth[2] = {t == DPO_EXO_PAIR ? 1e-3f : 0.0f, 0.2f};
            char why[256];
            c.label_smoothing = smooth[s];
            if (dpo_loss_check(&c, why, sizeof why) != 0) c.label_smoothing = 0; /* loss without smoothing */
            CHECK(dpo_loss_check(&c, why, sizeof why) == 0);
            PairMetrics met = {0};
            DpoBatch x = {B, pc, pr, rc, rr, nc, nr};
            DpoGrads gr = {g[0], g[1], g[2], g[3]};
            double loss = dpo_loss(&c, &x, 1.0f / B, &gr, &met);
            CHECK(fabs(met.loss - loss) < 1e-9 * (1 + fabs(loss)));
            printf("{\"kind\":\"dpo\",\"loss_type\":\"%s\",\"beta\":%.9g,\"ls\":%.9g,\"tau\":%.9g,\"loss\":%.12g,",
                   dpo_loss_name(c.type), c.beta, c.label_smoothing, c.discopop_tau, loss / B);
            printf("\"m_rc\":%.9g,\"m_rr\":%.9g,\"m_acc\":%.9g,\"m_margin\":%.9g,\"m_lc\":%.9g,\"m_lr\":%.9g,", met.reward_chosen / B,
                   met.reward_rejected / B, met.accuracy / B, met.margin / B, met.logp_chosen / B, met.logp_rejected / B);
            dump("pc", pc, B); putchar(','); dump("pr", pr, B); putchar(','); dump("rc", rc, B); putchar(',');
            dump("rr", rr, B); putchar(','); dump("nc", nc, B); putchar(','); dump("nr", nr, B); putchar(',');
            dump("dpc", g[0], B); putchar(','); dump("dpr", g[1], B); putchar(',');
            dump("drc", g[2], B); putchar(','); dump("drr", g[3], B); printf("}\n");
        }
}

/* Validation: each loss refuses label smoothing it does not use, and the ranges TRL documents. */
static void check_loss_validation(void) {
    char why[256];
    DpoLossCfg c = {.type = DPO_SIGMOID, .beta = 0.1f, .label_smoothing = 0.1f, .discopop_tau = 0.05f};
    CHECK(dpo_loss_check(&c, why, sizeof why) != 0 && strstr(why, "cdpo"));
    c.type = DPO_ROBUST; c.label_smoothing = 0.5f;
    CHECK(dpo_loss_check(&c, why, sizeof why) != 0 && strstr(why, "[0, 0.5)"));
    c.type = DPO_EXO_PAIR; c.label_smoothing = 0;
    CHECK(dpo_loss_check(&c, why, sizeof why) != 0 && strstr(why, "exo_pair"));
    c.type = DPO_DISCOPOP; c.discopop_tau = 0;
    CHECK(dpo_loss_check(&c, why, sizeof why) != 0 && strstr(why, "discopop_tau"));
    c.type = DPO_HINGE; c.discopop_tau = 0.05f; c.beta = 0;
    CHECK(dpo_loss_check(&c, why, sizeof why) != 0 && strstr(why, "beta"));
    DpoLoss t;
    CHECK(dpo_loss_parse("aot_unpaired", &t) == 0 && t == DPO_AOT_UNPAIRED);
    CHECK(dpo_loss_parse("kto_pair", &t) != 0);
    for (int i = 0; i < DPO_N_LOSSES; i++) CHECK(dpo_loss_parse(dpo_loss_name((DpoLoss)i), &t) == 0 && t == (DpoLoss)i);
}

static void dump_bt(Rng *r) {
    for (int s = 0; s < 2; s++) {
        float rc[B], rr[B], g[2][B];
        fill(r, rc, B, 0, 2); fill(r, rr, B, 0.3f, 2);
        memset(g, 0xff, sizeof g);
        float margin = 0.5f * s, center = 0.01f * s;
        PairMetrics met = {0};
        double loss = bt_loss(B, rc, rr, margin, center, 1.0f / B, g[0], g[1], &met);
        printf("{\"kind\":\"bt\",\"margin\":%.9g,\"center\":%.9g,\"loss\":%.12g,\"m_acc\":%.9g,", margin, center, loss / B,
               met.accuracy / B);
        dump("rc", rc, B); putchar(','); dump("rr", rr, B); putchar(',');
        dump("drc", g[0], B); putchar(','); dump("drr", g[1], B); printf("}\n");
    }
}

/* 12 AdamW steps on random params with random grads: warmup 3 + cosine, weight decay, clipping. */
static void dump_adamw(Rng *r) {
    enum { N = 50, STEPS = 12 };
    for (int cos = 0; cos < 2; cos++) {
        OptimCfg o;
        optim_defaults(&o);
        o.lr = 1e-2f; o.weight_decay = 0.1f; o.grad_clip = 1.5f; o.warmup_steps = 3; o.total_steps = STEPS;
        o.cosine = cos;
        float p[N], m[N], v[N], g[N];
        uint8_t decay[N]; /* cosine run: no decay on the first 10 ("biases") */
        for (int i = 0; i < N; i++) decay[i] = i >= 10;
        fill(r, p, N, 0, 1);
        memset(m, 0, sizeof m); memset(v, 0, sizeof v);
        printf("{\"kind\":\"adamw\",\"cosine\":%d,\"lr\":%.9g,\"wd\":%.9g,\"clip\":%.9g,\"warmup\":%d,\"total\":%d,", cos, o.lr,
               o.weight_decay, o.grad_clip, o.warmup_steps, o.total_steps);
        dump("p0", p, N);
        printf(",\"grads\":[");
        float lrs[STEPS], norms[STEPS];
        for (int t = 0; t < STEPS; t++) {
            fill(r, g, N, 0, t % 2 ? 0.05f : 1.0f); /* alternate clipped / unclipped steps */
            printf("%s", t ? "," : ""); dump(NULL, g, N);
            double nn = 0;
            for (int i = 0; i < N; i++) nn += (double)g[i] * g[i];
            norms[t] = (float)sqrt(nn);
            grad_clip_apply(g, N, sqrt(nn), o.grad_clip);
            lrs[t] = lr_at(&o, t);
            adamw_update(p, g, m, v, cos ? decay : NULL, N, lrs[t], &o, t + 1);
        }
        printf("],");
        dump("lrs", lrs, STEPS); putchar(','); dump("norms", norms, STEPS); putchar(',');
        dump("p", p, N); printf("}\n");
    }
}

static void test_truncate(void) {
    int np = 300, start, nc = 100, nr = 400;
    pair_truncate(&np, &start, &nc, &nr, 512, 128); /* 300+400 > 512: prompt -> last 128; 528 > 512 */
    CHECK(np == 128 && start == 172 && nc == 100 && nr == 384);
    np = 10; nc = 20; nr = 30;
    pair_truncate(&np, &start, &nc, &nr, 512, 128); /* fits: untouched */
    CHECK(np == 10 && start == 0 && nc == 20 && nr == 30);
    np = 200; nc = 250; nr = 10;
    pair_truncate(&np, &start, &nc, &nr, 400, 128); /* 450 > 400: prompt cut to 128, 378 fits */
    CHECK(np == 128 && start == 72 && nc == 250 && nr == 10);
    TokPairs tp = {0};
    int32_t pr[6] = {1, 2, 3, 4, 5, 6}, ch[5] = {7, 8, 9, 10, 11}, rj[2] = {12, 13};
    tokpairs_push(&tp, 42, pr, 6, ch, 5, rj, 2, 8, 3); /* prompt -> {4,5,6}; 3+5 = 8 fits */
    REQUIRE(tp.n == 1);
    CHECK(tp.prompt_len[0] == 3 && tp.rejected_off[0] - tp.chosen_off[0] == 8 && tp.chosen_off[1] - tp.rejected_off[0] == 5);
    CHECK(tp.ids[tp.chosen_off[0]] == 4 && tp.ids[tp.chosen_off[0] + 7] == 11 && tp.ids[tp.rejected_off[0] + 4] == 13);
    int32_t p2[2] = {20, 21}, c2[1] = {22}, r2[3] = {23, 24, 25};
    tokpairs_push(&tp, 43, p2, 2, c2, 1, r2, 3, 8, 3);
    int32_t *ids = NULL; uint8_t *mask = NULL; int *lens = NULL; size_t cap = 0;
    int64_t idx[2] = {0, 1};
    int T = batch_build(&tp, idx, 2, &ids, &mask, &lens, &cap); /* rows: c0 c1 r0 r1 */
    CHECK(T == 8 && lens[0] == 8 && lens[1] == 3 && lens[2] == 5 && lens[3] == 5);
    CHECK(mask[2] == 0 && mask[3] == 1 && mask[7] == 1 && mask[2 * T + 2] == 0 && mask[2 * T + 3] == 1 && mask[2 * T + 5] == 0);
    CHECK(ids[2 * T + 4] == 13 && ids[2 * T + 5] == 0);
    CHECK(ids[T + 2] == 22 && ids[3 * T + 1] == 21 && ids[3 * T + 4] == 25 && mask[3 * T + 1] == 0 && mask[3 * T + 2] == 1);
    free(ids); free(mask); free(lens);
    tokpairs_free(&tp);
}

int main(int argc, char **argv) {
    Rng r;
    rng_seed(&r, 7, 0);
    if (argc > 1 && !strcmp(argv[1], "dump")) {
        dump_losses(&r);
        dump_bt(&r);
        dump_adamw(&r);
        return t_fail_ ? 1 : 0;
    }
    test_truncate();
    check_loss_validation();
    TEST_MAIN_END();
}
