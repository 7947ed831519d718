/* test_clean_family.c - the rule boundaries of the PrefCleanBench family, consensus and calibration on
 * hand-made Votes, the expected actions written out by hand (quorum/clean.h).
 *
 * Fixture: 6 pairs, ids descending (so "ties by pair id" is not the index order); members
 * r0 (reward), l0 (lm), d0 (implicit), j0 (judge):
 *   i id   IFD_c       IFD_r   W = d(c)-d(r)   J = j(c)-j(r)
 *   0 60   1.0         0.5     0.25            0
 *   1 50   0.5         0.25    -1              -0.125
 *   2 40   2.0         0       0.25            0.25
 *   3 30   0.5         1       0.25            0
 *   4 20   0.875       0       2               -3
 *   5 10   1.0000001f  0       -1              1
 * ifd_r, p = 0.5: IFD_c > 1 -> 2, 5 removed; candidates 0,1,3,4 -> floor(0.5*4) = 2 lowest: 0.5 (1, id 50)
 *   and 0.5 (3, id 30) -> removed; IFD_c == 1 exactly stays a candidate and is kept.
 * ifd_gap (G = IFD_c - IFD_r: 0.5, 0.25, 2, -0.5, 0.875, 1), p = 0.5 -> k = 3 lowest: 3, 1, 0.
 * rw_gap, p = 0.5 -> k = 3: -1 (5, id 10), -1 (1, id 50), then of the 0.25 ties (0, 2, 3) the smallest id: 3.
 * llm_judge: J < 0 -> 1, 4; J == 0 (0, 3) kept. */
#include "quorum/clean.h"
#include "quorum/common.h"
#include "../test.h"

#include <string.h>

enum { K = ACTION_KEEP, F = ACTION_FLIP, R = ACTION_REMOVE };
#define NP 6
#define NM 4

static const float SC[NM][NP][2] = {
    {{1, 0}, {0, 1}, {2, 1}, {1, 3}, {0, 5}, {4, 4}},                                 /* r0: reward */
    {{1.0f, 0.5f}, {0.5f, 0.25f}, {2, 0}, {0.5f, 1}, {0.875f, 0}, {1.0000001f, 0}},  /* l0: lm */
    {{0.75f, 0.5f}, {-1, 0}, {0.25f, 0}, {1.25f, 1}, {2, 0}, {0, 1}},                /* d0: implicit */
    {{5, 5}, {4, 4.125f}, {3, 2.75f}, {7, 7}, {1, 4}, {6, 5}},                      /* j0: judge */
};

static void fixture(Votes *v) {
    memset(v, 0, sizeof *v);
    strcpy(v->corpus, "c");
    strcpy(v->split, "harmless");
    v->n_members = NM;
    v->n = NP;
    const uint8_t kinds[NM] = {MEMBER_REWARD, MEMBER_LM, MEMBER_IMPLICIT, MEMBER_JUDGE};
    memcpy(v->kind, kinds, NM);
    v->pair_id = xmalloc(NP * sizeof(int64_t));
    v->agree = xcalloc(NP, sizeof(int32_t));
    v->bucket = xcalloc(NP, 1);
    v->chosen = xmalloc(NM * NP * sizeof(float));
    v->rejected = xmalloc(NM * NP * sizeof(float));
    for (int i = 0; i < NP; i++) {
        v->pair_id[i] = 60 - 10 * i;
        v->agree[i] = SC[0][i][0] > SC[0][i][1];
        v->bucket[i] = v->agree[i] ? BUCKET_ALL : BUCKET_NO;
        for (int m = 0; m < NM; m++) v->chosen[m * NP + i] = SC[m][i][0], v->rejected[m * NP + i] = SC[m][i][1];
    }
}

static JobClean cfg_of(CleanMethod m, float p) {
    JobClean c;
    memset(&c, 0, sizeof c);
    c.method = m;
    c.p = p;
    return c;
}

static int actions_are(const JobClean *c, const Votes *v, const uint8_t *want) {
    uint8_t got[NP];
    clean_decide(c, v, got);
    int same = !memcmp(got, want, NP);
    if (!same) {
        fprintf(stderr, "  %s: got", clean_method_name(c->method));
        for (int i = 0; i < NP; i++) fprintf(stderr, " %d", got[i]);
        fputc('\n', stderr);
    }
    return same;
}

int main(void) {
    Votes v;
    fixture(&v);
    static const struct {
        CleanMethod m;
        float p;
        uint8_t want[NP];
    } CASES[] = {
        {CLEAN_IFD_R, 0.5f, {K, R, R, R, K, R}},       {CLEAN_IFD_GAP_R, 0.5f, {R, R, K, R, K, K}},
        {CLEAN_IFD_GAP_F, 0.5f, {F, F, K, F, K, K}},   {CLEAN_RW_GAP_R, 0.5f, {K, R, K, R, K, R}},
        {CLEAN_RW_GAP_F, 0.5f, {K, F, K, F, K, F}},    {CLEAN_LLM_JUDGE_R, 0.5f, {K, R, K, K, R, K}},
        {CLEAN_LLM_JUDGE_F, 0.5f, {K, F, K, K, F, K}},
        /* p = 0: the ranking rules act on nothing (ifd_r still drops IFD_c > 1) */
        {CLEAN_RW_GAP_R, 0.0f, {K, K, K, K, K, K}},    {CLEAN_IFD_R, 0.0f, {K, K, R, K, K, R}},
    };
    JobClean c;
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        c = cfg_of(CASES[k].m, CASES[k].p);
        CHECKF(actions_are(&c, &v, CASES[k].want), "case %zu", k);
    }
    /* consensus of llm_judge_r {1, 4} and rw_gap_r {1, 3, 5}: k = 2 -> {1}; k = 1 -> the union */
    c = cfg_of(CLEAN_CONSENSUS_F, 0.5f);
    strcpy(c.consensus[0], "llm_judge_r");
    strcpy(c.consensus[1], "rw_gap_r");
    c.n_consensus = 2;
    c.consensus_k = 2;
    CHECK(actions_are(&c, &v, (const uint8_t[NP]){K, F, K, K, K, K}));
    c.method = CLEAN_CONSENSUS_R;
    c.consensus_k = 1;
    CHECK(actions_are(&c, &v, (const uint8_t[NP]){K, R, K, R, R, R}));
    /* the reward-member rules see only r0: votes_mean_margin is r0's margin */
    CHECK(votes_mean_margin(&v, 3) == -2.0 && votes_kind_mean(&v, 4, MEMBER_JUDGE, 1, -1) == -3.0);
    /* calibration, rank: r0's 12 scores {1,0,0,1,2,1,1,3,0,5,4,4} -> 0-based average ranks / 11;
     * 0 x3 -> rank 1, 1 x4 -> 4.5, 2 -> 7, 3 -> 8, 4 x2 -> 9.5, 5 -> 11; weight 2 of 1 member -> factor 1 */
    c = cfg_of(CLEAN_MARGIN_REMOVE, 0.5f);
    c.normalize = NORM_RANK;
    strcpy(c.weights, "{\"r0\":2}");
    clean_calibrate(&c, &v);
    CHECK(v.chosen[0] == (float)(4.5 / 11) && v.rejected[0] == (float)(1.0 / 11) && v.chosen[4] == (float)(1.0 / 11));
    CHECK(v.rejected[4] == (float)(11.0 / 11) && v.chosen[5] == (float)(9.5 / 11) && v.chosen[2] == (float)(7.0 / 11));
    CHECK(v.chosen[NP] == 1.0f); /* the lm member is left alone */
    double label[NM], loo[NM];
    clean_member_agreement(&v, label, loo);
    CHECK(label[0] == 2.0 / 6 && isnan(loo[0]) && isnan(label[1])); /* 0 and 2 agree (5 is a tie); no rest */
    free(v.pair_id); free(v.agree); free(v.bucket); free(v.chosen); free(v.rejected);
    TEST_MAIN_END();
}
