/* test_trainer.c - drives train_run with a closed-form bigram "language model" so the trainer's
 * invariants (torch-equal steps, rank-count independence, ZeRO-1, kill/resume, SIGUSR1) are tested
 * without a transformer. run_trainer.py runs it under mpirun and checks it against torch.
 *
 * Bigram model: params W (V,V); log p(x_t | x_<t) = W[x_{t-1}, x_t] - logsumexp(W[x_{t-1}, :]).
 * Policy value: sum over masked t of that; reward value (BT): sum_{t>=1} W[x_{t-1}, x_t] / 8.
 *
 * usage: test_trainer OUT STEPS BATCH ACCUM ZERO1 LOSS   (LOSS: a dpo loss_type name, or bt) */
#include "quorum/common.h"
#include "quorum/train.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

enum { V = 24, NPAIRS = 40 };

typedef struct {
    int reward;
    int32_t *ids; uint8_t *mask; int *lens; int B, T;
} Bigram;

static void bg_forward(TrainModel *m, const int32_t *ids, const int *lens, const uint8_t *mask, int B, int T, float *out) {
    Bigram *g = m->impl;
    g->ids = xrealloc(g->ids, (size_t)B * T * sizeof(int32_t));
    g->mask = xrealloc(g->mask, (size_t)B * T);
    g->lens = xrealloc(g->lens, B * sizeof(int));
    memcpy(g->ids, ids, (size_t)B * T * sizeof(int32_t));
    memcpy(g->mask, mask, (size_t)B * T);
    memcpy(g->lens, lens, B * sizeof(int));
    g->B = B; g->T = T;
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int t = 1; t < lens[b]; t++) {
            const float *row = m->params + ids[b * T + t - 1] * V;
            if (g->reward) { s += row[ids[b * T + t]] / 8.0; continue; }
            if (!mask[b * T + t]) continue;
            double mx = row[0], z = 0;
            for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < V; v++) z += exp(row[v] - mx);
            s += row[ids[b * T + t]] - mx - log(z);
        }
        out[b] = (float)s;
    }
}

static void bg_backward(TrainModel *m, const float *dout) {
    Bigram *g = m->impl;
    int T = g->T;
    for (int b = 0; b < g->B; b++)
        for (int t = 1; t < g->lens[b]; t++) {
            int prev = g->ids[b * T + t - 1], cur = g->ids[b * T + t];
            const float *row = m->params + prev * V;
            float *drow = m->grads + prev * V;
            if (g->reward) { drow[cur] += dout[b] / 8.0f; continue; }
            if (!g->mask[b * T + t]) continue;
            double mx = row[0], z = 0;
            for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < V; v++) z += exp(row[v] - mx);
            for (int v = 0; v < V; v++) drow[v] -= (float)(dout[b] * exp(row[v] - mx) / z);
            drow[cur] += dout[b];
        }
}

static void bg_zero_grad(TrainModel *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }

static void make_pairs(TokPairs *d, Rng *r) {
    int32_t p[8], c[8], j[8];
    for (int i = 0; i < NPAIRS; i++) {
        int np = 2 + (int)rng_below(r, 5), nc = 1 + (int)rng_below(r, 7), nr = 1 + (int)rng_below(r, 7);
        for (int k = 0; k < np; k++) p[k] = (int32_t)rng_below(r, V);
        /* chosen leans to even tokens, rejected to odd ones: something to learn */
        for (int k = 0; k < nc; k++) c[k] = (int32_t)(2 * rng_below(r, V / 2) + (rng_uniform(r) < 0.2f));
        for (int k = 0; k < nr; k++) j[k] = (int32_t)(2 * rng_below(r, V / 2) + (rng_uniform(r) < 0.8f));
        tokpairs_push(d, i + 1, p, np, c, nc, j, nr, 10, 4);
    }
}

static void dump_data(const char *out, const TokPairs *d, const float *w0, const TrainCfg *c) {
    Buf b = {0};
    buf_appendf(&b, "{\"V\":%d,\"steps\":%d,\"batch\":%d,\"beta\":%.9g,\"ls\":%.9g,\"tau\":%.9g,\"lr\":%.9g,\"wd\":%.9g,\"clip\":%.9g,"
                "\"warmup\":%d,\"cosine\":%d,\"margin\":%.9g,\"center\":%.9g,\"seqs\":[", V, c->steps, c->batch_size,
                c->dpo.beta, c->dpo.label_smoothing, c->dpo.discopop_tau, c->optim.lr, c->optim.weight_decay, c->optim.grad_clip,
                c->optim.warmup_steps, c->optim.cosine, c->bt_margin, c->bt_center);
    for (int64_t i = 0; i < d->n; i++) {
        buf_appendf(&b, "%s[%d,[", i ? "," : "", d->prompt_len[i]);
        for (int64_t k = d->chosen_off[i]; k < d->rejected_off[i]; k++) buf_appendf(&b, "%s%d", k > d->chosen_off[i] ? "," : "", d->ids[k]);
        buf_append_str(&b, "],[");
        for (int64_t k = d->rejected_off[i]; k < d->chosen_off[i + 1]; k++) buf_appendf(&b, "%s%d", k > d->rejected_off[i] ? "," : "", d->ids[k]);
        buf_append_str(&b, "]]");
    }
    buf_append_str(&b, "],\"w0\":[");
    for (int i = 0; i < V * V; i++) buf_appendf(&b, "%s%.9g", i ? "," : "", w0[i]);
    int64_t *order = xmalloc((size_t)c->steps * c->batch_size * sizeof(int64_t));
    train_batch_order(c->seed, d->n, (int64_t)c->steps * c->batch_size, order);
    buf_append_str(&b, "],\"order\":[");
    for (int64_t i = 0; i < (int64_t)c->steps * c->batch_size; i++) buf_appendf(&b, "%s%lld", i ? "," : "", (long long)order[i]);
    buf_append_str(&b, "]}");
    char *p = path_join(out, "data.json");
    file_write_atomic(p, b.data, b.len);
    free(p); free(order); buf_free(&b);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc != 7) {
        fprintf(stderr, "usage: test_trainer OUT STEPS BATCH ACCUM ZERO1 LOSS (a dpo loss_type name, or bt)\n");
        MPI_Finalize();
        return 2;
    }
    TrainCfg c;
    train_cfg_defaults(&c);
    snprintf(c.out, sizeof c.out, "%s", argv[1]);
    c.steps = atoi(argv[2]);
    c.batch_size = atoi(argv[3]);
    c.grad_accum = atoi(argv[4]);
    c.zero1 = atoi(argv[5]);
    c.seed = 11;
    c.checkpoint_every = 3;
    c.quiet = 1;
    c.bucket_floats = 100; /* several buckets even for this tiny model */
    c.optim.lr = 0.05f; c.optim.weight_decay = 0.01f; c.optim.grad_clip = 0.5f;
    c.optim.warmup_steps = 2; c.optim.total_steps = c.steps; c.optim.cosine = 1;
    const char *loss = argv[6];
    c.objective = strcmp(loss, "bt") ? OBJ_DPO : OBJ_BT;
    if (c.objective == OBJ_DPO && dpo_loss_parse(loss, &c.dpo.type) != 0) {
        fprintf(stderr, "test_trainer: unknown loss %s\n", loss);
        MPI_Finalize();
        return 2;
    }
    c.dpo.beta = 0.5f;
    c.dpo.label_smoothing = c.dpo.type == DPO_ROBUST || c.dpo.type == DPO_CDPO ? 0.1f : 0.0f;
    c.bt_margin = 0.1f; c.bt_center = 0.01f;

    Rng r;
    rng_seed(&r, 5, 1);
    TokPairs d = {0};
    make_pairs(&d, &r);
    Bigram g = {.reward = c.objective == OBJ_BT};
    TrainModel m = {.n_params = V * V, .forward = bg_forward, .backward = bg_backward, .zero_grad = bg_zero_grad, .impl = &g};
    m.params = xmalloc(V * V * sizeof(float));
    m.grads = xcalloc(V * V, sizeof(float));
    for (int i = 0; i < V * V; i++) m.params[i] = 0.3f * rng_normal(&r);
    mkdir_p(c.out);
    if (quorum_rank() == 0) dump_data(c.out, &d, m.params, &c);
    int rc = 0;
    if (c.objective == OBJ_DPO) {
        char *rp = path_join(c.out, "ref_logps.h5");
        rc = ref_logps_compute(&m, &d, 3, rp);
        free(rp);
    }
    if (!rc) rc = train_run(&c, &m, &d, NULL);
    if (rc == 0 && quorum_rank() == 0) {
        char *p = path_join(c.out, "final_params.bin");
        file_write_atomic(p, m.params, m.n_params * sizeof(float));
        free(p);
    }
    tokpairs_free(&d);
    free(m.params); free(m.grads); free(g.ids); free(g.mask); free(g.lens);
    MPI_Finalize();
    return rc == 99 ? 99 : rc ? 1 : 0;
}
