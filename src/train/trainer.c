/* trainer.c - the one training loop behind DPO and reward-model training: data order, per-rank slices
 * and micro-batches, bucketed gradient allreduce, clipping, AdamW (optionally ZeRO-1), metrics and
 * checkpoint/resume. See quorum/train.h for the contract. */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/signal.h"
#include "quorum/train.h"

#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

void train_cfg_defaults(TrainCfg *c) {
    memset(c, 0, sizeof *c);
    c->objective = OBJ_DPO;
    c->dpo = (DpoLossCfg){.type = DPO_SIGMOID, .beta = 0.1f, .label_smoothing = 0.0f, .discopop_tau = 0.05f};
    c->lora = (LoraCfg){.r = 0, .alpha = 32.0f, .targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"};
    optim_defaults(&c->optim);
    c->steps = 100;
    c->batch_size = 8;
    c->grad_accum = 1;
    c->checkpoint_every = 50;
    c->seed = 1;
    c->bucket_floats = (size_t)1 << 20;
    snprintf(c->out, sizeof c->out, "out/train");
}

/* ---- data order: a permutation per epoch drawn from one running RNG ---- */
typedef struct {
    int64_t n, epoch, pos;
    Rng rng_epoch_start, rng;
    int64_t *perm;
} Order;

static void order_shuffle(Order *o) {
    o->rng_epoch_start = o->rng;
    for (int64_t i = 0; i < o->n; i++) o->perm[i] = i;
    for (int64_t i = o->n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)rng_below(&o->rng, (uint64_t)i + 1), t = o->perm[i];
        o->perm[i] = o->perm[j];
        o->perm[j] = t;
    }
}

static int64_t order_next(Order *o) {
    if (o->pos == o->n) {
        o->epoch++;
        o->pos = 0;
        order_shuffle(o);
    }
    return o->perm[o->pos++];
}

static void order_init(Order *o, uint64_t seed, int64_t n) {
    *o = (Order){.n = n, .perm = xmalloc((n ? n : 1) * sizeof(int64_t))};
    rng_seed(&o->rng, seed, 0x0da7a);
    order_shuffle(o);
}

void train_batch_order(uint64_t seed, int64_t n, int64_t count, int64_t *out) {
    Order o;
    order_init(&o, seed, n);
    for (int64_t i = 0; i < count; i++) out[i] = order_next(&o);
    free(o.perm);
}

/* ---- the objective over one micro-batch: forward 2b sequences, loss, backward ---- */
typedef struct {
    const TrainCfg *cfg;
    TrainModel *m;
    const TokPairs *d;
    int32_t *ids; uint8_t *mask; int *lens; size_t cap;
    float *out, *dout, *cnt, *rc, *rr; /* (2b,) / (b,) scratch; cnt = completion tokens per sequence */
    PairMetrics met;
    double tokens;
} Micro;

static void micro_run(Micro *u, const int64_t *idx, int b) {
    const TrainCfg *c = u->cfg;
    int T = batch_build(u->d, idx, b, &u->ids, &u->mask, &u->lens, &u->cap);
    for (int j = 0; j < 2 * b; j++) {
        u->tokens += u->lens[j];
        int n = 0;
        for (int t = 0; t < T; t++) n += u->mask[(size_t)j * T + t];
        u->cnt[j] = (float)n;
    }
    u->m->forward(u->m, u->ids, u->lens, u->mask, 2 * b, T, u->out);
    float scale = 1.0f / (float)c->batch_size; /* mean over the GLOBAL batch */
    if (c->objective == OBJ_DPO) {
        for (int i = 0; i < b; i++) {
            u->rc[i] = u->d->ref_chosen[idx[i]];
            u->rr[i] = u->d->ref_rejected[idx[i]];
        }
        DpoBatch x = {b, u->out, u->out + b, u->rc, u->rr, u->cnt, u->cnt + b};
        DpoGrads g = {u->dout, u->dout + b, NULL, NULL};
        dpo_loss(&c->dpo, &x, scale, &g, &u->met);
    } else {
        bt_loss(b, u->out, u->out + b, c->bt_margin, c->bt_center, scale, u->dout, u->dout + b, &u->met);
    }
    u->m->backward(u->m, u->dout);
}

/* ZeRO-1 partition: rank r owns params [part[r], part[r+1]). */
static void partition(size_t n, int R, int *counts, int *displs) {
    for (int r = 0; r < R; r++) {
        size_t lo = n * r / R, hi = n * (r + 1) / R;
        displs[r] = (int)lo;
        counts[r] = (int)(hi - lo);
    }
}

/* One JSON line with TRL's metric names (a reward model has no log-probs: those two are left out). */
static void metrics_write(FILE *f, const StepLog *l, int quiet, int policy) {
    char line[1024], logps[128] = "";
    if (policy) snprintf(logps, sizeof logps, "\"logps/chosen\": %.6g, \"logps/rejected\": %.6g, ", l->logp_chosen, l->logp_rejected);
    snprintf(line, sizeof line,
             "{\"step\": %d, \"loss\": %.9g, \"rewards/chosen\": %.6g, \"rewards/rejected\": %.6g, "
             "\"rewards/accuracies\": %.6g, \"rewards/margins\": %.6g, %s\"grad_norm\": %.6g, \"learning_rate\": %.6g, "
             "\"tokens_per_s\": %.1f, \"epoch\": %.4f, \"step_s\": %.4g, \"allreduce_s\": %.4g}",
             l->step, l->loss, l->reward_chosen, l->reward_rejected, l->accuracy, l->margin, logps, l->grad_norm, l->lr,
             l->tokens_per_s, l->epoch, l->step_s, l->allreduce_s);
    if (f) { fprintf(f, "%s\n", line); fflush(f); }
    if (!quiet) printf("%s\n", line);
}

/* Keeps the metrics lines of steps <= `step` (a resumed run rewrites the ones after its checkpoint). */
static FILE *metrics_open(const char *out, int step) {
    char *p = path_join(out, "metrics.jsonl");
    Buf keep = {0};
    if (step > 0) {
        size_t len;
        const char *err;
        char *txt = file_read_all(p, &len, &err);
        for (char *s = txt, *e; s && *s; s = e + 1) {
            e = strchr(s, '\n');
            if (!e) break;
            if (!strncmp(s, "{\"step\": ", 9) && atoi(s + 9) <= step) buf_append(&keep, s, e - s + 1);
        }
        free(txt);
    }
    file_write_atomic(p, keep.data ? keep.data : "", keep.len);
    buf_free(&keep);
    FILE *f = fopen(p, "a");
    if (!f) quorum_warn("cannot append to %s: metrics go to stdout only", p);
    free(p);
    return f;
}

typedef struct {
    float *m, *v; /* AdamW moments: the full vectors, or this rank's ZeRO-1 slice */
    int *counts, *displs;
    size_t lo, len;
} OptState;

static const TrainOps *ops_of(const TrainModel *m) { return m->ops ? m->ops : &train_ops_cpu; }

/* Collective. Gathers the moments to rank 0 (ZeRO-1) and writes the checkpoint there, through host copies
 * (the buffers may live on a GPU). */
static int checkpoint_save(const TrainCfg *c, TrainModel *m, OptState *os, const Order *o, int step) {
    const TrainOps *ops = ops_of(m);
    size_t n = m->n_params;
    int rank = quorum_rank(), R = quorum_world();
    float *hm = xmalloc((os->len ? os->len : 1) * sizeof(float)), *hv = xmalloc((os->len ? os->len : 1) * sizeof(float));
    ops->to_host(hm, os->m, os->len);
    ops->to_host(hv, os->v, os->len);
    float *fm = hm, *fv = hv, *hp = rank == 0 ? xmalloc(n * sizeof(float)) : NULL;
    if (c->zero1 && R > 1) {
        fm = rank == 0 ? xmalloc(n * sizeof(float)) : NULL;
        fv = rank == 0 ? xmalloc(n * sizeof(float)) : NULL;
        mpiCheck(MPI_Gatherv(hm, (int)os->len, MPI_FLOAT, fm, os->counts, os->displs, MPI_FLOAT, 0, MPI_COMM_WORLD));
        mpiCheck(MPI_Gatherv(hv, (int)os->len, MPI_FLOAT, fv, os->counts, os->displs, MPI_FLOAT, 0, MPI_COMM_WORLD));
    }
    int rc = 0;
    if (rank == 0) {
        ops->to_host(hp, m->params, n);
        CkptState s = {.step = step, .epoch = o->epoch, .pos = o->pos, .rng = o->rng_epoch_start, .seed = c->seed, .world = R};
        rc = ckpt_write(c->out, &s, hp, fm, fv, n);
    }
    if (fm != hm) { free(fm); free(fv); }
    free(hm); free(hv); free(hp);
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return rc;
}

/* Collective. 1 = no checkpoint, 0 = resumed, -1 = error. Every rank reads the files (shared FS). */
static int checkpoint_load(const TrainCfg *c, TrainModel *m, OptState *os, Order *o, int *step) {
    const TrainOps *ops = ops_of(m);
    size_t n = m->n_params;
    if (!ckpt_exists(c->out)) return 1;
    float *hp = xmalloc(n * sizeof(float)), *fm = xmalloc(n * sizeof(float)), *fv = xmalloc(n * sizeof(float));
    CkptState s;
    int rc = ckpt_read(c->out, &s, hp, fm, fv, n);
    if (!rc && s.seed != c->seed) rc = quorum_input_error(c->out, "checkpoint: seed %llu differs from --seed %llu",
                                                          (unsigned long long)s.seed, (unsigned long long)c->seed);
    if (!rc) {
        ops->to_device(m->params, hp, n);
        ops->to_device(os->m, fm + os->lo, os->len);
        ops->to_device(os->v, fv + os->lo, os->len);
        *step = s.step;
        o->epoch = s.epoch;
        o->pos = s.pos;
        o->rng = s.rng;
        order_shuffle(o); /* rebuilds that epoch's permutation and the RNG state after it */
    }
    free(hp); free(fm); free(fv);
    int any = rc;
    mpiCheck(MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    return any;
}

/* Test hooks, after step `step`: QUORUM_TEST_KILL_AFTER_STEP simulates a crash (SIGKILL, no cleanup);
 * QUORUM_TEST_SIGNAL_AFTER_STEP sends this process SIGUSR1 (a preemption notice) on rank 0. */
static void hook_after_step(const char *var, int step, int sig) {
    const char *k = getenv(var);
    if (k && atoi(k) == step && quorum_rank() == 0) raise(sig);
}

int train_run(const TrainCfg *c, TrainModel *m, const TokPairs *d, StepLog *log) {
    int rank = quorum_rank(), R = quorum_world();
    size_t n = m->n_params;
    /* same data and options on every rank: every rank takes the same early return */
    if (d->n <= 0) return quorum_input_error(c->out, "no pairs to train on");
    if (c->batch_size < R * c->grad_accum)
        return quorum_input_error(c->out, "batch size %d cannot be split over %d ranks x %d micro-batches (need "
                                  "batch_size >= ranks * grad_accum)", c->batch_size, R, c->grad_accum);
    qCheck(c->objective != OBJ_DPO || d->ref_chosen, "call ref_logps_compute first", "DPO without reference log-probs");
    quorum_signals_install();
    mkdir_p(c->out);

    OptState os = {.counts = xmalloc(R * sizeof(int)), .displs = xmalloc(R * sizeof(int))};
    partition(n, R, os.counts, os.displs);
    os.lo = c->zero1 ? (size_t)os.displs[rank] : 0;
    os.len = c->zero1 ? (size_t)os.counts[rank] : n;
    const TrainOps *ops = ops_of(m);
    os.m = ops->alloc_zeroed(os.len);
    os.v = ops->alloc_zeroed(os.len);

    Order o;
    order_init(&o, c->seed, d->n);
    int step = 0, rc = checkpoint_load(c, m, &os, &o, &step);
    if (rc < 0) goto done;
    if (rc == 0) quorum_log("resumed from %s/checkpoint at step %d", c->out, step);
    FILE *mf = rank == 0 ? metrics_open(c->out, step) : NULL;

    int B = c->batch_size;
    int my_lo = (int)((int64_t)B * rank / R), my_hi = (int)((int64_t)B * (rank + 1) / R);
    int64_t *gidx = xmalloc(B * sizeof(int64_t));
    int mb_max = (my_hi - my_lo + c->grad_accum - 1) / c->grad_accum;
    Micro u = {.cfg = c, .m = m, .d = d};
    u.out = xmalloc(2 * mb_max * sizeof(float));
    u.dout = xmalloc(2 * mb_max * sizeof(float));
    u.cnt = xmalloc(2 * mb_max * sizeof(float));
    u.rc = xmalloc(mb_max * sizeof(float));
    u.rr = xmalloc(mb_max * sizeof(float));
    rc = 0;
    for (; step < c->steps; step++) {
        double t0 = now_seconds();
        for (int i = 0; i < B; i++) gidx[i] = order_next(&o); /* every rank walks the same global order */
        m->zero_grad(m);
        memset(&u.met, 0, sizeof u.met);
        u.tokens = 0;
        int mine = my_hi - my_lo;
        for (int a = 0; a < c->grad_accum; a++) {
            int lo = mine * a / c->grad_accum, hi = mine * (a + 1) / c->grad_accum;
            if (hi > lo && m->micro_begin) m->micro_begin(m, step, a);
            if (hi > lo) micro_run(&u, gidx + my_lo + lo, hi - lo);
        }
        double ta = now_seconds();
        double norm = ops->grads_allreduce(m->grads, n, c->bucket_floats ? c->bucket_floats : n);
        ta = now_seconds() - ta; /* includes waiting for the slowest rank's backward */
        double met[9] = {u.met.loss, u.met.reward_chosen, u.met.reward_rejected, u.met.accuracy, u.met.margin,
                         u.met.logp_chosen, u.met.logp_rejected, u.met.n, u.tokens};
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, met, 9, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
        float lr = lr_at(&c->optim, step);
        ops->adamw(m->params + os.lo, m->grads + os.lo, os.m, os.v, m->decay_mask ? m->decay_mask + os.lo : NULL,
                   os.len, lr, grad_clip_coef(norm, c->optim.grad_clip), &c->optim, step + 1);
        if (c->zero1 && R > 1) ops->params_allgather(m->params, n, os.counts, os.displs);
        double dt = now_seconds() - t0;
        StepLog l = {.step = step + 1, .loss = met[0] / met[7], .reward_chosen = met[1] / met[7],
                     .reward_rejected = met[2] / met[7], .accuracy = met[3] / met[7], .margin = met[4] / met[7],
                     .logp_chosen = met[5] / met[7], .logp_rejected = met[6] / met[7], .grad_norm = norm, .lr = lr,
                     .tokens_per_s = met[8] / (dt > 1e-9 ? dt : 1e-9),
                     .epoch = o.epoch + (double)o.pos / (double)o.n, .step_s = dt, .allreduce_s = ta};
        if (log) log[step] = l;
        if (rank == 0) metrics_write(mf, &l, c->quiet, c->objective == OBJ_DPO);
        hook_after_step("QUORUM_TEST_SIGNAL_AFTER_STEP", step + 1, SIGUSR1);
        int stop = quorum_stop_requested(), any_stop = 0;
        mpiCheck(MPI_Allreduce(&stop, &any_stop, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
        int last = step + 1 == c->steps;
        if (any_stop || last || (c->checkpoint_every > 0 && (step + 1) % c->checkpoint_every == 0)) {
            if (checkpoint_save(c, m, &os, &o, step + 1)) { rc = -1; break; }
        }
        hook_after_step("QUORUM_TEST_KILL_AFTER_STEP", step + 1, SIGKILL);
        if (any_stop && !last) {
            quorum_log("stop requested: checkpoint written at step %d, exiting 99", step + 1);
            rc = 99;
            break;
        }
    }
    if (mf) fclose(mf);
    free(gidx); free(u.ids); free(u.mask); free(u.lens);
    free(u.out); free(u.dout); free(u.cnt); free(u.rc); free(u.rr);
done:
    ops->free(os.m); ops->free(os.v); free(os.counts); free(os.displs); free(o.perm);
    return rc;
}
