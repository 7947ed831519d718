/* clean_rules.c - the cleaning rules as pure functions over a Votes struct, and the ledger counts.
 * No I/O here: everything the rules need is in the votes file (see quorum/clean.h). */
#include "clean_internal.h"
#include "quorum/clean.h"
#include "quorum/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const ACTION_NAMES[ACTION_COUNT] = {"keep", "flip", "remove"};

const char *clean_action_name(CleanAction a) { return (unsigned)a < ACTION_COUNT ? ACTION_NAMES[a] : "?"; }

/* Mean over the members of one kind of one per-member quantity; (wc, wr) picks chosen (1,0), rejected
 * (0,1) or the margin (1,-1). Members are summed in order so every rank gets the same bits. */
double votes_kind_mean(const Votes *v, int64_t i, MemberKind kind, double wc, double wr) {
    double sum = 0.0;
    int count = 0;
    for (int m = 0; m < v->n_members; m++) {
        if (v->kind[m] != kind) continue;
        sum += wc * (double)v->chosen[(int64_t)m * v->n + i] + wr * (double)v->rejected[(int64_t)m * v->n + i];
        count++;
    }
    return count ? sum / count : 0.0;
}
double votes_mean_margin(const Votes *v, int64_t i) { return votes_kind_mean(v, i, MEMBER_REWARD, 1.0, -1.0); }
double votes_mean_chosen(const Votes *v, int64_t i) { return votes_kind_mean(v, i, MEMBER_REWARD, 1.0, 0.0); }
double votes_mean_rejected(const Votes *v, int64_t i) { return votes_kind_mean(v, i, MEMBER_REWARD, 0.0, 1.0); }

int64_t clean_margin_count(float p, int64_t n) {
    /* p is a float32 from the job file: 0.7f * 10 = 6.99999988, so take p as its 6-decimal value
     * first (0.7f -> 0.7), then floor with a hair of slack for the double product. */
    double pd = round((double)p * 1e6) / 1e6;
    double k = floor(pd * (double)n + 1e-9);
    if (!(k > 0)) return 0;
    return k >= (double)n ? n : (int64_t)k;
}

static int split_listed(const JobClean *cfg, const char *split) {
    for (int s = 0; s < cfg->n_splits; s++)
        if (!strcmp(cfg->splits[s], split)) return 1;
    return 0;
}

static CleanAction sac_action(const JobClean *cfg, const Votes *v, int64_t i, int low_split) {
    switch ((Bucket)v->bucket[i]) {
    case BUCKET_NO: return ACTION_FLIP;
    case BUCKET_LOW:
        if (low_split && votes_mean_chosen(v, i) < cfg->bad_threshold &&
            votes_mean_rejected(v, i) < cfg->bad_threshold)
            return ACTION_REMOVE;
        return ACTION_KEEP;
    default: return ACTION_KEEP;
    }
}

static int rank_key_cmp(const void *a, const void *b) {
    const RankKey *x = a, *y = b;
    if (x->value != y->value) return x->value < y->value ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

void clean_mark_lowest(RankKey *keys, int64_t n, int64_t k, CleanAction act, uint8_t *action) {
    if (k <= 0) return;
    qsort(keys, (size_t)n, sizeof *keys, rank_key_cmp);
    for (int64_t j = 0; j < k && j < n; j++) action[keys[j].index] = (uint8_t)act;
}

static void margin_mark(const Votes *v, float p, CleanAction act, uint8_t *action) {
    RankKey *keys = xmalloc((size_t)(v->n ? v->n : 1) * sizeof *keys);
    for (int64_t i = 0; i < v->n; i++) keys[i] = (RankKey){votes_mean_margin(v, i), v->pair_id[i], i};
    clean_mark_lowest(keys, v->n, clean_margin_count(p, v->n), act, action);
    free(keys);
}

void clean_decide(const JobClean *cfg, const Votes *v, uint8_t *action) {
    int n_members = votes_n_voters(v), low_split = split_listed(cfg, v->split);
    for (int64_t i = 0; i < v->n; i++) action[i] = ACTION_KEEP;
    switch (cfg->method) {
    case CLEAN_NONE: return;
    case CLEAN_SAC:
        for (int64_t i = 0; i < v->n; i++) action[i] = (uint8_t)sac_action(cfg, v, i, low_split);
        return;
    case CLEAN_VOTE_ALL_REMOVE:
    case CLEAN_VOTE_ALL_FLIP: {
        uint8_t act = cfg->method == CLEAN_VOTE_ALL_FLIP ? ACTION_FLIP : ACTION_REMOVE;
        for (int64_t i = 0; i < v->n && n_members > 0; i++)
            if (v->agree[i] == 0) action[i] = act;
        return;
    }
    case CLEAN_VOTE_MAJ_REMOVE:
    case CLEAN_VOTE_MAJ_FLIP: {
        uint8_t act = cfg->method == CLEAN_VOTE_MAJ_FLIP ? ACTION_FLIP : ACTION_REMOVE;
        for (int64_t i = 0; i < v->n; i++)
            if (2 * (n_members - v->agree[i]) > n_members) action[i] = act; /* disagree > N/2, exactly */
        return;
    }
    case CLEAN_MARGIN_REMOVE: margin_mark(v, cfg->p, ACTION_REMOVE, action); return;
    case CLEAN_MARGIN_FLIP: margin_mark(v, cfg->p, ACTION_FLIP, action); return;
    default: clean_decide_family(cfg, v, action); return; /* clean_rules_family.c */
    }
}

void ledger_tally(Ledger *l, const Votes *v, const uint8_t *action) {
    for (int64_t i = 0; i < v->n; i++) {
        unsigned b = v->bucket[i], a = action[i];
        qCheck(b < BUCKET_COUNT && a < ACTION_COUNT, "the votes file is corrupt", "pair %lld: bucket %u action %u",
               (long long)v->pair_id[i], b, a);
        l->count[b][a]++;
    }
}

int64_t ledger_total(const Ledger *l, CleanAction a) {
    int64_t t = 0;
    for (int b = 0; b < BUCKET_COUNT; b++) t += l->count[b][a];
    return t;
}

int ledger_balanced(const Ledger *l) {
    return l->lines == ledger_total(l, ACTION_KEEP) + ledger_total(l, ACTION_FLIP) +
                           ledger_total(l, ACTION_REMOVE) + l->rejected;
}

char *clean_dir(const char *out_dir, const char *method_override, const char *corpus) {
    Buf b = {0};
    if (method_override)
        buf_appendf(&b, "%s/cleaned-%s/%s", out_dir, method_override, corpus);
    else
        buf_appendf(&b, "%s/cleaned/%s", out_dir, corpus);
    return b.data;
}
