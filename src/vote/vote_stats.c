/* vote_stats.c - bucket counts, member accuracy, pairwise agreement, mean margins and Fleiss' kappa
 * of a votes table, and their JSON (quorum/vote.h). Serial and in a fixed order: every rank computes
 * the same bits from the same merged arrays. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quorum/common.h"
#include "quorum/vote.h"

int vote_agrees(float chosen, float rejected, float margin) {
    volatile float d = chosen - rejected; /* float32, not an extended-precision intermediate */
    return d > margin;
}

double fleiss_kappa_binary(const int32_t *agree, int64_t n, int n_members) {
    if (n <= 0 || n_members < 2) return NAN;
    double N = n_members, sum_p = 0, sum_a = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = agree[i], d = N - a;
        sum_p += (a * (a - 1) + d * (d - 1)) / (N * (N - 1));
        sum_a += a;
    }
    double p_bar = sum_p / n, p = sum_a / (n * N), p_e = p * p + (1 - p) * (1 - p);
    if (p_e >= 1.0) return NAN;
    return (p_bar - p_e) / (1 - p_e);
}

void vote_stats(const Votes *v, VoteStats *st) {
    memset(st, 0, sizeof *st);
    int nm = v->n_members;
    int64_t n = v->n;
    for (int64_t i = 0; i < n; i++) st->bucket_count[v->bucket[i]]++;
    for (int a = 0; a < nm; a++) {
        int64_t agree = 0;
        double margin = 0;
        const float *ca = v->chosen + a * n, *ra = v->rejected + a * n;
        for (int64_t i = 0; i < n; i++) {
            agree += vote_agrees(ca[i], ra[i], v->margin);
            margin += (double)ca[i] - (double)ra[i];
        }
        st->member_accuracy[a] = n ? (double)agree / n : NAN;
        st->mean_margin[a] = n ? margin / n : NAN;
        for (int b = 0; b < nm; b++) {
            const float *cb = v->chosen + b * n, *rb = v->rejected + b * n;
            int64_t same = 0;
            for (int64_t i = 0; i < n; i++)
                same += vote_agrees(ca[i], ra[i], v->margin) == vote_agrees(cb[i], rb[i], v->margin);
            st->agreement[a][b] = n ? (double)same / n : NAN;
        }
    }
    st->fleiss_kappa = fleiss_kappa_binary(v->agree, n, votes_n_voters(v)); /* agree counts reward members */
}

char *vote_stats_path(const char *out_dir, const char *corpus) {
    Buf b = {0};
    buf_appendf(&b, "%s%svotes/%s.stats.json", out_dir, (*out_dir && out_dir[strlen(out_dir) - 1] != '/') ? "/" : "",
                corpus);
    return b.data;
}

/* A float32 setting as the decimal a person wrote (0.1, not 0.10000000149). */
static double short_float(float x) {
    char s[32];
    snprintf(s, sizeof s, "%.7g", (double)x);
    return strtod(s, NULL);
}

static cJSON *number_array(const double *x, int n) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(x[i]));
    return arr;
}

char *vote_stats_json(const Votes *v, const VoteStats *st) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "corpus", v->corpus);
    cJSON_AddStringToObject(root, "split", v->split);
    cJSON_AddNumberToObject(root, "n_pairs", (double)v->n);
    cJSON_AddNumberToObject(root, "n_members", v->n_members);
    cJSON *names = cJSON_AddArrayToObject(root, "members");
    for (int m = 0; m < v->n_members; m++) cJSON_AddItemToArray(names, cJSON_CreateString(v->members[m]));
    cJSON_AddNumberToObject(root, "margin", short_float(v->margin));
    cJSON_AddNumberToObject(root, "high_frac", short_float(v->high_frac));
    cJSON *buckets = cJSON_AddObjectToObject(root, "buckets");
    for (int b = 0; b < BUCKET_COUNT; b++) {
        cJSON *o = cJSON_AddObjectToObject(buckets, bucket_name((Bucket)b));
        cJSON_AddNumberToObject(o, "count", (double)st->bucket_count[b]);
        cJSON_AddNumberToObject(o, "pct", v->n ? 100.0 * st->bucket_count[b] / v->n : 0.0);
    }
    cJSON_AddItemToObject(root, "member_accuracy", number_array(st->member_accuracy, v->n_members));
    cJSON_AddItemToObject(root, "mean_margin", number_array(st->mean_margin, v->n_members));
    cJSON *agreement = cJSON_AddArrayToObject(root, "agreement");
    for (int a = 0; a < v->n_members; a++)
        cJSON_AddItemToArray(agreement, number_array(st->agreement[a], v->n_members));
    cJSON_AddNumberToObject(root, "fleiss_kappa", st->fleiss_kappa);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    char *out = xmalloc(strlen(s) + 2);
    sprintf(out, "%s\n", s);
    cJSON_free(s);
    return out;
}
