/* test_score.c - builtin members against hand-computed rewards and an independent FNV-1a loop;
 * score_owner against the assignment rules of score.h enumerated by hand; score files round-trip
 * random data bit-exact, a changed checksum makes a file stale, wrong pair ids / truncation are
 * refused; member_open refuses unknown rules and HF folders with one error; the dynamic schedule's queue
 * (sched_next) against the rule of score.h, its sequences written out by hand.
 * usage: test_score <scratch dir> */
#include "../test.h"
#include "quorum/common.h"
#include "quorum/safetensors.h"
#include "quorum/score.h"
#include "../../src/score/score_internal.h"

#include <mpi.h>
#include <string.h>

static JobMember member_cfg(const char *path) {
    JobMember c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "m");
    snprintf(c.path, sizeof c.path, "%s", path);
    c.max_length = 1024;
    c.batch_size = 8;
    return c;
}

static Pair text_pair(const char *chosen, const char *rejected) {
    Pair p;
    memset(&p, 0, sizeof p);
    p.chosen = chosen;
    p.chosen_len = (int64_t)strlen(chosen);
    p.rejected = rejected;
    p.rejected_len = (int64_t)strlen(rejected);
    return p;
}

/* Scores one pair with member `path`; returns 0 and the two rewards. */
static int score1(const char *path, const char *c, const char *r, float *rc, float *rr) {
    Member m;
    JobMember cfg = member_cfg(path);
    if (member_open(&m, &cfg) != 0) return -1;
    Pair p = text_pair(c, r);
    *rc = *rr = NAN; /* poison */
    int rc_ = m.score(&m, &p, 1, rc, rr);
    member_close(&m);
    return rc_;
}

/* FNV-1a 64 written out from its definition (offset basis, prime), independent of common.c. */
static float ref_hash(uint64_t seed, const char *s) {
    uint64_t h = 14695981039346656037ULL;
    for (int k = 0; k < 8; k++) { h ^= (seed >> (8 * k)) & 0xff; h *= 1099511628211ULL; }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) { h ^= *p; h *= 1099511628211ULL; }
    return (float)((double)(h >> 40) / 8388608.0 - 1.0);
}

static void test_builtins(void) {
    float c, r;
    CHECK(score1("builtin:len", " Sure, here.", " No", &c, &r) == 0 && c == 12.0f && r == 3.0f);
    CHECK(score1("builtin:neglen", "\xc3\xa9t\xc3\xa9", "", &c, &r) == 0 && c == -5.0f && r == 0.0f);
    /* job-relative resolution turns "builtin:len" into "<dir>/builtin:len": still builtin */
    CHECK(score1("jobs/x/builtin:len", "abcd", "ab", &c, &r) == 0 && c == 4.0f && r == 2.0f);
    /* kw: non-overlapping, case-sensitive: "aaaa" holds "aa" twice; "You you" holds "you" once */
    CHECK(score1("builtin:kw:aa", "aaaa", "a", &c, &r) == 0 && c == 1.5f && r == -0.5f);
    CHECK(score1("builtin:kw:you", "You you yours", "thank you, you", &c, &r) == 0 && c == 1.5f && r == 1.5f);
    CHECK(score1("builtin:hash", "hello", "world", &c, &r) == 0);
    CHECK(c == ref_hash(0, "hello") && r == ref_hash(0, "world") && c != r);
    CHECK(c >= -1.0f && c < 1.0f && r >= -1.0f && r < 1.0f);
    CHECK(score1("builtin:hash:12345", "hello", "world", &c, &r) == 0);
    CHECK(c == ref_hash(12345, "hello") && r == ref_hash(12345, "world") && c != ref_hash(0, "hello"));
    /* bad rules: one error each, no member */
    CHECK(score1("builtin:length", "a", "b", &c, &r) != 0);
    CHECK(score1("builtin:hash:x1", "a", "b", &c, &r) != 0);
    CHECK(score1("builtin:hash:-1", "a", "b", &c, &r) != 0);
    CHECK(score1("builtin:kw:", "a", "b", &c, &r) != 0);
    CHECK(score1("/models/rm0", "a", "b", &c, &r) != 0); /* HF member: not in this build yet */
}

/* score.h: R >= N: rank r hosts r % N, the j-th host of m takes shards k % count_m == j;
 * R < N: rank r hosts members r, r+R, ... whole. Written out by hand for a few (R, N). */
static void test_owner(void) {
    /* R = 5, N = 2: member 0 on ranks 0, 2, 4 (count 3); member 1 on ranks 1, 3 (count 2). */
    int want0[6] = {0, 2, 4, 0, 2, 4}, want1[6] = {1, 3, 1, 3, 1, 3};
    for (int k = 0; k < 6; k++) {
        CHECK(score_owner(0, k, 2, 5) == want0[k]);
        CHECK(score_owner(1, k, 2, 5) == want1[k]);
    }
    /* R = 2, N = 5: rank 0 hosts members 0, 2, 4; rank 1 hosts 1, 3; every shard. */
    int want[5] = {0, 1, 0, 1, 0};
    for (int m = 0; m < 5; m++)
        for (int k = 0; k < 4; k++) CHECK(score_owner(m, k, 5, 2) == want[m]);
    /* R = N: rank m hosts member m alone. R = 1: everything on rank 0. */
    for (int m = 0; m < 3; m++) CHECK(score_owner(m, 7, 3, 3) == m && score_owner(m, 7, 3, 1) == 0);
    /* Each (member, shard) has exactly one owner in range, for all small R, N. */
    for (int R = 1; R <= 6; R++)
        for (int N = 1; N <= 6; N++)
            for (int m = 0; m < N; m++)
                for (int k = 0; k < 10; k++) {
                    int o = score_owner(m, k, N, R);
                    CHECK(o >= 0 && o < R && (R < N ? o == m % R : o % N == m));
                }
}

/* Asks in the order of `ranks` (each with the members it holds), expects units `want` (-1: none left). */
static void sched_expect(Sched *s, int n, const int *ranks, const uint32_t *held, const int64_t *want) {
    for (int i = 0; i < n; i++) {
        int64_t got = sched_next(s, ranks[i], held[i]);
        CHECK(got == want[i]);
        if (got != want[i]) fprintf(stderr, "  ask %d (rank %d): unit %lld, expected %lld\n", i, ranks[i], (long long)got,
                                    (long long)want[i]);
    }
}

/* score.h "Dynamic schedule": keep a held member while it has work; else a member nobody holds (most cost
 * left); else the one with the most cost left per holder; largest unit first within a member. */
static void test_sched(void) {
    /* 3 members, 2 ranks: m0 units 0..2 cost 1 5 3, m1 units 3..4 cost 2 4, m2 unit 5 cost 6. */
    int mem1[6] = {0, 0, 0, 1, 1, 2};
    double cost1[6] = {1, 5, 3, 2, 4, 6};
    Sched s;
    sched_init(&s, mem1, cost1, 6, 3, 2);
    int r1[8] = {0, 1, 0, 1, 1, 0, 0, 1};
    uint32_t h1[8] = {0, 0, 1, 2, 2, 1, 1, 4};
    /* r0: all free, m0 has most left (9) -> its largest (unit 1); r1: m0 taken, m1 and m2 free with 6 each ->
     * m1 (lower index), largest unit 4; r0 keeps m0 (unit 2); r1 keeps m1 (unit 3); r1: m1 empty, m2 free ->
     * unit 5; r0: m0 (unit 0); then nothing for anyone. */
    int64_t w1[8] = {1, 4, 2, 3, 5, 0, -1, -1};
    sched_expect(&s, 8, r1, h1, w1);
    CHECK(s.given == 6);
    sched_free(&s);
    /* 2 members, 3 ranks: m0 units 0..3 cost 10 each (ties: unit order), m1 units 4..5 cost 1. r0: m0 has
     * most left -> unit 0; r1: m1 is free -> unit 4; r2: nothing free, m0 has 30/(1+1) per holder, m1 1/2 ->
     * m0, unit 1; r1 keeps m1 (unit 5), then joins m0 (unit 2); r0 keeps m0 (unit 3); r2: none left. */
    int mem2[6] = {0, 0, 0, 0, 1, 1};
    double cost2[6] = {10, 10, 10, 10, 1, 1};
    sched_init(&s, mem2, cost2, 6, 2, 3);
    int r2[7] = {0, 1, 2, 1, 1, 0, 2};
    uint32_t h2[7] = {0, 0, 0, 2, 2, 1, 1};
    int64_t w2[7] = {0, 4, 1, 5, 2, 3, -1};
    sched_expect(&s, 7, r2, h2, w2);
    sched_free(&s);
    /* One member on 2 ranks (a large member spans ranks): units by cost 3 2 1 alternate as asked. */
    int mem3[3] = {0, 0, 0};
    double cost3[3] = {1, 3, 2};
    sched_init(&s, mem3, cost3, 3, 1, 2);
    int r3[4] = {0, 1, 0, 1};
    uint32_t h3[4] = {0, 0, 1, 1};
    int64_t w3[4] = {1, 2, 0, -1};
    sched_expect(&s, 4, r3, h3, w3);
    sched_free(&s);
}

/* score.h "Memory budget": 3 members of 0.4 GB each (4e8 bytes, set by hand; builtin rules so
 * they open without weights). Budget 1 GB: two stay open, the least recently used one is closed for a
 * third. No budget: one open at a time. */
static void test_budget(void) {
    Job job;
    memset(&job, 0, sizeof job);
    job.n_members = 3;
    for (int m = 0; m < 3; m++) job.committee[m] = member_cfg(m == 0 ? "builtin:len" : m == 1 ? "builtin:neglen" : "builtin:hash");
    ScoreRun run;
    memset(&run, 0, sizeof run);
    run.job = &job;
    for (int m = 0; m < 3; m++) run.member_params[m] = 1e8, run.member_bytes[m] = 4e8;
    run.budget_gb = 1.0;
    double load_s;
    int seq[6] = {0, 1, 2, 1, 0, 0};
    uint32_t want[6] = {1, 3, 6, 6, 3, 3}; /* open members after each acquire */
    for (int i = 0; i < 6; i++) {
        CHECK(score_member_acquire(&run, seq[i], &load_s) == 0);
        CHECK(score_open_mask(&run) == want[i]);
        if (score_open_mask(&run) != want[i]) fprintf(stderr, "  budget step %d: open %u, expected %u\n", i,
                                                      score_open_mask(&run), want[i]);
    }
    run.budget_gb = 0; /* one at a time */
    CHECK(score_member_acquire(&run, 2, &load_s) == 0 && score_open_mask(&run) == 4);
    CHECK(score_member_acquire(&run, 2, &load_s) == 0 && load_s == 0 && score_open_mask(&run) == 4);
    run.budget_gb = 0.5; /* room for one: the other is closed first */
    CHECK(score_member_acquire(&run, 1, &load_s) == 0 && score_open_mask(&run) == 2);
    for (int m = 0; m < 3; m++)
        if (run.open[m]) member_close(&run.member[m]);
}

/* member_bytes: a checkpoint whose matrices are all BF16 stays bf16 when loaded for scoring (2 B per matrix
 * element, 4 B per vector element); one F32 matrix makes the load fp32 (4 B everywhere); an implicit member
 * counts its reference model too. Sizes by hand from the shapes written. */
static void test_member_bytes(const char *dir) {
    float w[6 * 5], v[5];
    for (int i = 0; i < 30; i++) w[i] = (float)test_uniform(-1, 1);
    for (int i = 0; i < 5; i++) v[i] = (float)test_uniform(-1, 1);
    const char *names[2] = {"bf16", "mixed"};
    double want[2] = {2.0 * (30 + 30) + 4.0 * 5, 4.0 * (30 + 30 + 5)};
    char *paths[2];
    for (int k = 0; k < 2; k++) {
        paths[k] = path_join(dir, names[k]);
        REQUIRE(mkdir_p(paths[k]) == 0);
        StWrite ts[3] = {{.name = "a.weight", .ndim = 2, .shape = {6, 5}, .data = w, .dtype = ST_BF16},
                         {.name = "b.weight", .ndim = 2, .shape = {5, 6}, .data = w, .dtype = k ? ST_F32 : ST_BF16},
                         {.name = "norm.weight", .ndim = 1, .shape = {5}, .data = v, .dtype = ST_F32}};
        REQUIRE(safetensors_write(paths[k], ts, 3, 0) == 0);
        JobMember c = member_cfg(paths[k]);
        double got = member_bytes(&c);
        CHECKF(got == want[k], "member_bytes(%s) = %.0f, want %.0f", names[k], got, want[k]);
    }
    JobMember c = member_cfg(paths[0]);
    c.kind = MEMBER_IMPLICIT;
    snprintf(c.ref, sizeof c.ref, "%s", paths[1]);
    CHECKF(member_bytes(&c) == want[0] + want[1], "implicit member_bytes = %.0f", member_bytes(&c));
    c = member_cfg("builtin:len");
    CHECK(member_bytes(&c) == 4.0);
    free(paths[0]);
    free(paths[1]);
}

static void test_files(const char *dir) {
    enum { N = 37 };
    int64_t ids[N], bad[N];
    float c[N], r[N], c2[N], r2[N];
    for (int i = 0; i < N; i++) {
        ids[i] = bad[i] = 3 + 2 * i + (int64_t)(test_uniform(0, 1) * 2);
        c[i] = (float)(test_uniform(0, 1) * 20 - 10);
        r[i] = (float)(test_uniform(0, 1) * 20 - 10);
        c2[i] = r2[i] = NAN; /* poison */
    }
    bad[N - 1] += 1000;
    char *p = score_path(dir, "harmless", "rm0", 7);
    char *want = path_join(dir, "scores/harmless/rm0/shard-00007.h5");
    CHECK(!strcmp(p, want));
    const uint64_t mfp = 0x0123456789abcdefULL;
    CHECK(!score_file_current(p, "rm0", mfp, 42));
    CHECK(score_file_write(p, "rm0", mfp, 0xfeedbeefcafe1234ULL, N, ids, c, r) == 0);
    CHECK(score_file_current(p, "rm0", mfp, 0xfeedbeefcafe1234ULL));
    CHECK(!score_file_current(p, "rm0", mfp, 0xfeedbeefcafe1235ULL)); /* stale: the shard changed */
    CHECK(!score_file_current(p, "rm0", mfp ^ 1, 0xfeedbeefcafe1234ULL)); /* stale: the member changed */
    CHECK(!score_file_current(p, "rm1", mfp, 0xfeedbeefcafe1234ULL)); /* another member's file */
    CHECK(score_file_read(p, "rm0", N, ids, c2, r2) == 0);
    CHECK(!memcmp(c, c2, sizeof c) && !memcmp(r, r2, sizeof r));
    CHECK(score_file_read(p, "rm1", N, ids, c2, r2) != 0);   /* member attribute is rm0 */
    CHECK(score_file_read(p, "rm0", N, bad, c2, r2) != 0);   /* pair ids of another shard */
    CHECK(score_file_read(p, "rm0", N - 1, ids, c2, r2) != 0); /* wrong n */
    /* truncated file: refused, and not current */
    size_t len = 0;
    const char *err;
    char *bytes = file_read_all(p, &len, &err);
    REQUIRE(bytes);
    char *cut = path_join(dir, "scores/harmless/rm0/shard-00008.h5");
    CHECK(file_write_atomic(cut, bytes, len / 2) == 0);
    CHECK(score_file_read(cut, "rm0", N, ids, c2, r2) != 0);
    CHECK(!score_file_current(cut, "rm0", mfp, 0xfeedbeefcafe1234ULL));
    free(bytes);
    free(cut);
    free(p);
    free(want);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    REQUIRE(argc == 2 && mkdir_p(argv[1]) == 0);
    test_builtins();
    test_owner();
    test_sched();
    test_budget();
    test_member_bytes(argv[1]);
    test_files(argv[1]);
    MPI_Finalize();
    TEST_MAIN_END();
}
