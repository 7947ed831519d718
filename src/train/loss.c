/* loss.c - the DPO loss family (TRL's loss_type list) and Bradley-Terry, forward + backward over
 * per-sequence values. Computed in double per pair (values are O(100) log-probs; the cost is nothing
 * next to the model). Definitions and citations: quorum/train.h. */
#include "quorum/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quorum/common.h"

double log_sigmoid(double x) { return x < 0 ? x - log1p(exp(x)) : -log1p(exp(-x)); }
static double sigmoid(double x) { return exp(log_sigmoid(x)); }

int dpo_loss_parse(const char *name, DpoLoss *out) {
    for (int i = 0; i < DPO_N_LOSSES; i++)
        if (!strcmp(name, dpo_loss_name((DpoLoss)i))) { *out = (DpoLoss)i; return 0; }
    return -1;
}

/* Losses whose log-ratios are divided by the completion token counts first. */
static int normalized(DpoLoss t) { return t == DPO_SIGMOID_NORM || t == DPO_IPO_MEAN; }

int dpo_loss_needs_counts(DpoLoss t) { return normalized(t) || t == DPO_SFT; }

int dpo_loss_check(const DpoLossCfg *c, char *why, size_t n) {
    double e = c->label_smoothing;
    if (!(c->beta > 0)) return snprintf(why, n, "beta must be > 0 (got %g)", (double)c->beta), -1;
    switch (c->type) {
    case DPO_ROBUST:
        if (e < 0 || e >= 0.5) return snprintf(why, n, "robust: label_smoothing must be in [0, 0.5) (got %g)", e), -1;
        return 0;
    case DPO_CDPO:
        if (e < 0 || e > 0.5) return snprintf(why, n, "cdpo: label_smoothing must be in [0, 0.5] (got %g)", e), -1;
        return 0;
    case DPO_EXO_PAIR:
        if (e <= 0 || e >= 1)
            return snprintf(why, n, "exo_pair: label_smoothing must be in (0, 1), e.g. 1e-3 (got %g)", e), -1;
        return 0;
    case DPO_AOT:
    case DPO_AOT_UNPAIRED:
        if (e < 0 || e >= 1) return snprintf(why, n, "%s: label_smoothing must be in [0, 1) (got %g)",
                                             dpo_loss_name(c->type), e), -1;
        return 0;
    case DPO_DISCOPOP:
        if (!(c->discopop_tau > 0)) return snprintf(why, n, "discopop: discopop_tau must be > 0 (got %g)",
                                                    (double)c->discopop_tau), -1;
        break;
    default:
        break;
    }
    if (e != 0)
        return snprintf(why, n, "%s does not use label_smoothing (got %g); it applies to robust, exo_pair, aot, "
                        "aot_unpaired and cdpo (the pre-2026 TRL sigmoid with label smoothing)",
                        dpo_loss_name(c->type), e), -1;
    return 0;
}

/* dl/dz of the sigmoid family with smoothing e: l = -(1-e) logsig(b z) - e logsig(-b z). */
static double smoothed(double b, double e, double z, double *dz) {
    *dz = -(1 - e) * b * sigmoid(-b * z) + e * b * sigmoid(b * z);
    return -(1 - e) * log_sigmoid(b * z) - e * log_sigmoid(-b * z);
}

/* One pair's loss from its chosen and rejected log-ratios c, r (z = c - r); *dc, *dr = dl/dc, dl/dr. */
static double pair_loss(const DpoLossCfg *cf, double c, double r, double *dc, double *dr) {
    double b = cf->beta, e = cf->label_smoothing, z = c - r, dz = 0, l;
    *dc = *dr = 0;
    switch (cf->type) {
    case DPO_SIGMOID:
    case DPO_SIGMOID_NORM:
        l = smoothed(b, 0, z, &dz);
        break;
    case DPO_CDPO:
        l = smoothed(b, e, z, &dz);
        break;
    case DPO_ROBUST:
        l = (-(1 - e) * log_sigmoid(b * z) + e * log_sigmoid(-b * z)) / (1 - 2 * e);
        dz = (-(1 - e) * b * sigmoid(-b * z) - e * b * sigmoid(b * z)) / (1 - 2 * e);
        break;
    case DPO_HINGE: {
        double h = 1.0 - b * z;
        l = h > 0 ? h : 0.0;
        dz = h > 0 ? -b : 0.0;
        break;
    }
    case DPO_IPO:
    case DPO_IPO_MEAN: {
        double d = z - 1.0 / (2.0 * b);
        l = d * d;
        dz = 2.0 * d;
        break;
    }
    case DPO_EXO_PAIR: { /* KL(softmax(b (c, r)) || (1-e, e)) */
        double u = b * z, qw = sigmoid(u), ql = sigmoid(-u);
        l = qw * (log_sigmoid(u) - log1p(-e)) + ql * (log_sigmoid(-u) - log(e));
        dz = b * qw * ql * (u - log1p(-e) + log(e));
        break;
    }
    case DPO_NCA_PAIR:
        l = -log_sigmoid(b * c) - 0.5 * log_sigmoid(-b * c) - 0.5 * log_sigmoid(-b * r);
        *dc = -b * sigmoid(-b * c) + 0.5 * b * sigmoid(b * c);
        *dr = 0.5 * b * sigmoid(b * r);
        return l;
    case DPO_BCO_PAIR:
        l = -log_sigmoid(b * c) - log_sigmoid(-b * r);
        *dc = -b * sigmoid(-b * c);
        *dr = b * sigmoid(b * r);
        return l;
    case DPO_SPPO_HARD:
        l = (c - 0.5 / b) * (c - 0.5 / b) + (r + 0.5 / b) * (r + 0.5 / b);
        *dc = 2 * (c - 0.5 / b);
        *dr = 2 * (r + 0.5 / b);
        return l;
    case DPO_APO_ZERO: {
        double sc = sigmoid(b * c), sr = sigmoid(b * r);
        *dc = -b * sc * (1 - sc);
        *dr = b * sr * (1 - sr);
        return 1 - sc + sr;
    }
    case DPO_APO_DOWN: {
        double sc = sigmoid(b * c), sz = sigmoid(b * z);
        *dc = b * sc * (1 - sc) - b * sz * (1 - sz);
        *dr = b * sz * (1 - sz);
        return sc + 1 - sz;
    }
    case DPO_DISCOPOP: { /* logistic/exponential blend modulated by sigmoid(u / tau) */
        double u = b * z, tau = cf->discopop_tau, m = sigmoid(u / tau), ex = exp(-u);
        l = -log_sigmoid(u) * (1 - m) + ex * m;
        dz = b * (-sigmoid(-u) * (1 - m) - ex * m + (log_sigmoid(u) + ex) * m * (1 - m) / tau);
        break;
    }
    default: /* batch-level losses are handled by dpo_loss itself */
        l = 0;
        break;
    }
    *dc = dz;
    *dr = -dz;
    return l;
}

/* Ascending order of x (n,) into idx, ties by index (deterministic). */
static const double *sort_keys;
static int by_key(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_keys[i] != sort_keys[j]) return sort_keys[i] < sort_keys[j] ? -1 : 1;
    return i - j;
}
static void argsort(const double *x, int n, int *idx) {
    for (int i = 0; i < n; i++) idx[i] = i;
    sort_keys = x;
    qsort(idx, (size_t)n, sizeof *idx, by_key);
}

/* aot / aot_unpaired: the j-th smallest of u against the j-th smallest of v, smoothed sigmoid on the
 * difference; du[i], dv[i] receive dl/du_i, dl/dv_i (routed back through the sort, as torch.sort). */
static double sorted_quantiles(const DpoLossCfg *cf, int B, const double *u, const double *v, double *du, double *dv) {
    int *iu = xmalloc(sizeof(int) * (size_t)(B ? B : 1)), *iv = xmalloc(sizeof(int) * (size_t)(B ? B : 1));
    argsort(u, B, iu);
    argsort(v, B, iv);
    double total = 0;
    for (int j = 0; j < B; j++) {
        double g;
        total += smoothed(cf->beta, cf->label_smoothing, u[iu[j]] - v[iv[j]], &g);
        du[iu[j]] = g;
        dv[iv[j]] = -g;
    }
    free(iu);
    free(iv);
    return total;
}

/* The batch-level losses: fills pl (per-position losses summed into the return value) and the four
 * per-pair gradients. aot sorts policy and reference log-ratio margins; aot_unpaired sorts the chosen and
 * the rejected log-ratios; sft is the token-mean NLL of the chosen completions over the B pairs. */
static double batch_loss(const DpoLossCfg *cf, const DpoBatch *x, double *g[4]) {
    int B = x->B;
    double total = 0;
    if (cf->type == DPO_SFT) {
        double nll = 0, tok = 0;
        for (int i = 0; i < B; i++) { nll -= x->pc[i]; tok += x->nc[i]; }
        tok = tok > 1 ? tok : 1;
        for (int i = 0; i < B; i++) g[0][i] = -B / tok;
        return B * nll / tok;
    }
    double *u = xmalloc(sizeof(double) * 4 * (size_t)(B ? B : 1)), *v = u + B, *du = v + B, *dv = du + B;
    for (int i = 0; i < B; i++) {
        if (cf->type == DPO_AOT) { u[i] = (double)x->pc[i] - x->pr[i]; v[i] = (double)x->rc[i] - x->rr[i]; }
        else { u[i] = (double)x->pc[i] - x->rc[i]; v[i] = (double)x->pr[i] - x->rr[i]; }
    }
    total = sorted_quantiles(cf, B, u, v, du, dv);
    for (int i = 0; i < B; i++) {
        if (cf->type == DPO_AOT) { g[0][i] = du[i]; g[1][i] = -du[i]; g[2][i] = dv[i]; g[3][i] = -dv[i]; }
        else { g[0][i] = du[i]; g[2][i] = -du[i]; g[1][i] = dv[i]; g[3][i] = -dv[i]; }
    }
    free(u);
    return total;
}

double dpo_loss(const DpoLossCfg *cf, const DpoBatch *x, float scale, const DpoGrads *grads, PairMetrics *met) {
    int B = x->B;
    qCheck(!dpo_loss_needs_counts(cf->type) || (x->nc && x->nr), "the caller fills DpoBatch.nc/nr",
           "dpo_loss: loss \"%s\" needs completion token counts", dpo_loss_name(cf->type));
    double *g = xcalloc(4 * (size_t)(B ? B : 1), sizeof(double)), *gv[4] = {g, g + B, g + 2 * B, g + 3 * B};
    double total = 0;
    if (cf->type == DPO_AOT || cf->type == DPO_AOT_UNPAIRED || cf->type == DPO_SFT) {
        total = batch_loss(cf, x, gv);
    } else {
        for (int i = 0; i < B; i++) {
            double kc = 1, kr = 1, dc, dr;
            if (normalized(cf->type)) { kc = 1.0 / (x->nc[i] > 1 ? x->nc[i] : 1); kr = 1.0 / (x->nr[i] > 1 ? x->nr[i] : 1); }
            double c = kc * ((double)x->pc[i] - x->rc[i]), r = kr * ((double)x->pr[i] - x->rr[i]);
            total += pair_loss(cf, c, r, &dc, &dr);
            gv[0][i] = kc * dc; gv[2][i] = -kc * dc;
            gv[1][i] = kr * dr; gv[3][i] = -kr * dr;
        }
    }
    if (grads) {
        float *out[4] = {grads->dpc, grads->dpr, grads->drc, grads->drr};
        for (int k = 0; k < 4; k++)
            for (int i = 0; out[k] && i < B; i++) out[k][i] = (float)(scale * gv[k][i]);
    }
    free(g);
    if (met) {
        for (int i = 0; i < B; i++) {
            double wc = cf->beta * ((double)x->pc[i] - x->rc[i]), wr = cf->beta * ((double)x->pr[i] - x->rr[i]);
            met->reward_chosen += wc;
            met->reward_rejected += wr;
            met->accuracy += wc > wr;
            met->margin += wc - wr;
            met->logp_chosen += x->pc[i];
            met->logp_rejected += x->pr[i];
            met->n += 1;
        }
        met->loss += total;
    }
    return total;
}

double bt_loss(int B, const float *r_c, const float *r_r, float margin, float center_coef, float scale,
               float *dr_c, float *dr_r, PairMetrics *met) {
    double total = 0;
    for (int i = 0; i < B; i++) {
        double d = (double)r_c[i] - r_r[i] - margin, s = (double)r_c[i] + r_r[i];
        double l = -log_sigmoid(d) + center_coef * s * s;
        double gd = -sigmoid(-d), gs = 2.0 * center_coef * s;
        total += l;
        if (dr_c) dr_c[i] = (float)(scale * (gd + gs));
        if (dr_r) dr_r[i] = (float)(scale * (-gd + gs));
        if (met) {
            met->loss += l;
            met->reward_chosen += r_c[i];
            met->reward_rejected += r_r[i];
            met->accuracy += r_c[i] > r_r[i];
            met->margin += (double)r_c[i] - r_r[i];
            met->n += 1;
        }
    }
    return total;
}
