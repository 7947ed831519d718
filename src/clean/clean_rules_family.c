/* clean_rules_family.c - the PrefCleanBench rules over the non-reward member kinds (quorum/clean.h):
 * ifd_r and ifd_gap_* (lm members), rw_gap_* (implicit members), llm_judge_* (judge members). Pure
 * functions of the votes file, like clean_rules.c. */
#include "clean_internal.h"
#include "quorum/clean.h"
#include "quorum/common.h"

#include <stdlib.h>

MemberKind clean_method_kind(CleanMethod m) {
    switch (m) {
    case CLEAN_IFD_R:
    case CLEAN_IFD_GAP_R:
    case CLEAN_IFD_GAP_F: return MEMBER_LM;
    case CLEAN_RW_GAP_R:
    case CLEAN_RW_GAP_F: return MEMBER_IMPLICIT;
    case CLEAN_LLM_JUDGE_R:
    case CLEAN_LLM_JUDGE_F: return MEMBER_JUDGE;
    default: return MEMBER_REWARD;
    }
}

/* ifd_r: pairs whose chosen IFD exceeds 1 are removed; of the rest, the floor(p * rest) lowest. */
static void ifd_r_mark(const Votes *v, float p, uint8_t *action) {
    RankKey *keys = xmalloc((size_t)(v->n ? v->n : 1) * sizeof *keys);
    int64_t n_cand = 0;
    for (int64_t i = 0; i < v->n; i++) {
        double ifd = votes_kind_mean(v, i, MEMBER_LM, 1.0, 0.0);
        if (ifd <= 1.0) keys[n_cand++] = (RankKey){ifd, v->pair_id[i], i};
        else action[i] = ACTION_REMOVE;
    }
    clean_mark_lowest(keys, n_cand, clean_margin_count(p, n_cand), ACTION_REMOVE, action);
    free(keys);
}

/* The floor(p * n) pairs with the lowest mean gap (chosen - rejected) over the members of `kind`. */
static void gap_mark(const Votes *v, MemberKind kind, float p, CleanAction act, uint8_t *action) {
    RankKey *keys = xmalloc((size_t)(v->n ? v->n : 1) * sizeof *keys);
    for (int64_t i = 0; i < v->n; i++) keys[i] = (RankKey){votes_kind_mean(v, i, kind, 1.0, -1.0), v->pair_id[i], i};
    clean_mark_lowest(keys, v->n, clean_margin_count(p, v->n), act, action);
    free(keys);
}

/* consensus_*: the listed methods decide, each alone; act where at least consensus_k of them act. */
static void consensus_mark(const JobClean *cfg, const Votes *v, CleanAction act, uint8_t *action) {
    uint8_t *one = xmalloc((size_t)(v->n ? v->n : 1));
    int32_t *votes = xcalloc((size_t)(v->n ? v->n : 1), sizeof *votes);
    for (int k = 0; k < cfg->n_consensus; k++) {
        JobClean c = *cfg;
        if (clean_method_parse(cfg->consensus[k], &c.method) || c.method == CLEAN_CONSENSUS_R ||
            c.method == CLEAN_CONSENSUS_F)
            continue; /* job.c refuses these */
        clean_decide(&c, v, one);
        for (int64_t i = 0; i < v->n; i++) votes[i] += one[i] != ACTION_KEEP;
    }
    for (int64_t i = 0; i < v->n; i++)
        if (votes[i] >= cfg->consensus_k) action[i] = (uint8_t)act;
    free(one);
    free(votes);
}

void clean_decide_family(const JobClean *cfg, const Votes *v, uint8_t *action) {
    CleanMethod m = cfg->method;
    if (m == CLEAN_CONSENSUS_R || m == CLEAN_CONSENSUS_F) {
        consensus_mark(cfg, v, m == CLEAN_CONSENSUS_F ? ACTION_FLIP : ACTION_REMOVE, action);
        return;
    }
    MemberKind kind = clean_method_kind(m);
    int present = 0;
    for (int k = 0; k < v->n_members; k++) present |= v->kind[k] == kind;
    if (!present || kind == MEMBER_REWARD) return; /* clean_job refuses these before deciding */
    CleanAction act = (m == CLEAN_IFD_GAP_F || m == CLEAN_RW_GAP_F || m == CLEAN_LLM_JUDGE_F) ? ACTION_FLIP : ACTION_REMOVE;
    switch (m) {
    case CLEAN_IFD_R: ifd_r_mark(v, cfg->p, action); return;
    case CLEAN_IFD_GAP_R:
    case CLEAN_IFD_GAP_F:
    case CLEAN_RW_GAP_R:
    case CLEAN_RW_GAP_F: gap_mark(v, kind, cfg->p, act, action); return;
    case CLEAN_LLM_JUDGE_R:
    case CLEAN_LLM_JUDGE_F:
        for (int64_t i = 0; i < v->n; i++)
            if (votes_kind_mean(v, i, MEMBER_JUDGE, 1.0, -1.0) < 0.0) action[i] = (uint8_t)act; /* ties keep */
        return;
    default: return;
    }
}
