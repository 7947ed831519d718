/* clean_calibrate.c - calibrated committees (quorum/clean.h): per-member normalization and weights of
 * the reward members' scores, and each member's agreement with the labels and with the rest of the
 * committee. Serial, fixed order: every rank gets the same bits. */
#include "quorum/clean.h"
#include "quorum/common.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Weight of member m from clean.weights (job.c checked the object), 1 when absent. */
static double member_weight(const JobClean *cfg, const char *name) {
    if (!cfg->weights[0]) return 1.0;
    cJSON *w = cJSON_Parse(cfg->weights);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(w, name);
    double x = cJSON_IsNumber(e) ? e->valuedouble : 1.0;
    cJSON_Delete(w);
    return x;
}

typedef struct {
    double value;
    int64_t at;
} ValueAt;

static int value_cmp(const void *a, const void *b) {
    const ValueAt *x = a, *y = b;
    if (x->value != y->value) return x->value < y->value ? -1 : 1;
    return (x->at > y->at) - (x->at < y->at);
}

/* x[0..n) -> (average 1-based rank - 1) / (n - 1), ties sharing their average rank; n == 1 -> 0. */
static void rank_unit(const double *x, int64_t n, double *out) {
    ValueAt *s = xmalloc(sizeof *s * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) s[i] = (ValueAt){x[i], i};
    qsort(s, (size_t)n, sizeof *s, value_cmp);
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j + 1 < n && s[j + 1].value == s[i].value) j++;
        double r = n > 1 ? ((double)(i + j) / 2.0) / (double)(n - 1) : 0.0; /* 0-based average rank */
        for (int64_t k = i; k <= j; k++) out[s[k].at] = r;
        i = j + 1;
    }
    free(s);
}

/* z-score over the 2n values (chosen then rejected, summed in that order), population sigma. */
static void zscore(const double *x, int64_t n, double *out) {
    double mu = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mu += x[i];
    mu /= (double)(n ? n : 1);
    for (int64_t i = 0; i < n; i++) var += (x[i] - mu) * (x[i] - mu);
    double sd = sqrt(var / (double)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) out[i] = sd > 0 ? (x[i] - mu) / sd : 0.0;
}

void clean_calibrate(const JobClean *cfg, Votes *v) {
    int voters = votes_n_voters(v);
    if (voters == 0 || (cfg->normalize == NORM_NONE && !cfg->weights[0])) return;
    double wsum = 0;
    for (int m = 0; m < v->n_members; m++)
        if (v->kind[m] == MEMBER_REWARD) wsum += member_weight(cfg, v->members[m]);
    int64_t n = v->n;
    double *x = xmalloc(sizeof(double) * (size_t)(2 * n + 1)), *y = xmalloc(sizeof(double) * (size_t)(2 * n + 1));
    for (int m = 0; m < v->n_members; m++) {
        if (v->kind[m] != MEMBER_REWARD) continue;
        float *c = v->chosen + (int64_t)m * n, *r = v->rejected + (int64_t)m * n;
        for (int64_t i = 0; i < n; i++) x[i] = c[i], x[n + i] = r[i];
        if (cfg->normalize == NORM_ZSCORE) zscore(x, 2 * n, y);
        else if (cfg->normalize == NORM_RANK) rank_unit(x, 2 * n, y);
        else memcpy(y, x, sizeof(double) * (size_t)(2 * n));
        double f = member_weight(cfg, v->members[m]) * voters / wsum; /* a plain mean is then the weighted one */
        for (int64_t i = 0; i < n; i++) c[i] = (float)(y[i] * f), r[i] = (float)(y[n + i] * f);
    }
    free(x);
    free(y);
}

void clean_member_agreement(const Votes *v, double *label, double *loo) {
    int64_t n = v->n;
    for (int m = 0; m < v->n_members; m++) {
        label[m] = loo[m] = NAN;
        if (v->kind[m] != MEMBER_REWARD || n == 0) continue;
        int64_t with_label = 0, with_rest = 0, others = votes_n_voters(v) - 1;
        for (int64_t i = 0; i < n; i++) {
            double d = 0, rest = 0; /* member m's margin; the sum of the other reward members' margins */
            for (int k = 0; k < v->n_members; k++) {
                if (v->kind[k] != MEMBER_REWARD) continue;
                double dk = (double)v->chosen[(int64_t)k * n + i] - (double)v->rejected[(int64_t)k * n + i];
                if (k == m) d = dk;
                else rest += dk;
            }
            with_label += d > 0;
            with_rest += (d > 0) == (rest > 0);
        }
        label[m] = (double)with_label / (double)n;
        if (others > 0) loo[m] = (double)with_rest / (double)n;
    }
}
