/* tests/test.h - the one support library of the C tests: the assertion harness, the RNG, stderr
 * capture and the random votes table. Header-only; every helper is static (unused ones cost nothing).
 *
 * Harness: CHECK keeps going and counts failures; REQUIRE stops the test. TEST_MAIN_END prints the
 * closing "N passed, N failed" line and returns non-zero on any failure. A test built from several
 * files defines TEST_EXTERN_COUNTERS before including this in all files but the one with main(), so
 * they count into one pair of counters. */
#ifndef QUORUM_TEST_H
#define QUORUM_TEST_H
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quorum/common.h"
#include "quorum/rng.h"
#include "quorum/vote.h"

#ifdef TEST_EXTERN_COUNTERS
extern int t_pass_, t_fail_;
#else
int t_pass_, t_fail_;
#endif
#define CHECK(cond) do { if (cond) t_pass_++; else { t_fail_++; \
    fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { if (cond) t_pass_++; else { t_fail_++; \
    fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); fprintf(stderr, __VA_ARGS__); \
    fputc('\n', stderr); } } while (0)
/* CHECK that also logs `what` when it passes (the long parity tests print every step). */
#define CHECK_NAMED(what, cond) do { int ok_ = (cond) != 0; printf("  %-34s %s\n", (what), ok_ ? "ok" : "FAILED"); \
    CHECKF(ok_, "%s", (what)); } while (0)
#define REQUIRE(cond) do { if (cond) t_pass_++; else { \
    fprintf(stderr, "FATAL %s:%d: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)
#define TEST_MAIN_END() do { printf("%d passed, %d failed\n", t_pass_, t_fail_); \
    return t_fail_ ? 1 : 0; } while (0)

/* ---- the RNG: quorum/rng.h, one stream per test file, the same on every rank (same seed) ---- */
static Rng t_rng_ = {{0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL, 0x2545f4914f6cdd1dULL}};
static inline void test_seed(uint64_t seed) { rng_seed(&t_rng_, seed, 0); }
static inline uint64_t test_u64(void) { return rng_u64(&t_rng_); }
static inline uint64_t test_below(uint64_t n) { return rng_below(&t_rng_, n); }
/* Uniform in [lo, hi) in double (53 random bits). */
static inline double test_uniform(double lo, double hi) {
    return lo + (hi - lo) * ((double)(rng_u64(&t_rng_) >> 11) / 9007199254740992.0);
}

/* ---- stderr capture: what a call printed ---- */
static int t_cap_saved_ = -1;
static char t_cap_path_[64];
static inline void capture_begin(void) {
    fflush(stderr);
    snprintf(t_cap_path_, sizeof t_cap_path_, "/tmp/quorum_test_%d.err", (int)getpid());
    t_cap_saved_ = dup(2);
    int fd = open(t_cap_path_, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
}
/* Restores stderr and returns what was printed since capture_begin (caller frees; "" when nothing). */
static inline char *capture_end(void) {
    fflush(stderr);
    dup2(t_cap_saved_, 2);
    close(t_cap_saved_);
    size_t n = 0;
    const char *err = NULL;
    char *s = file_read_all(t_cap_path_, &n, &err);
    unlink(t_cap_path_);
    return s ? s : xstrdup("");
}

/* ---- a random votes table (quorum/vote.h), the same on every rank ----
 * n pairs, nm members. Rewards: integers in [-3, 3] when `integer` (mean margins tie often), else
 * uniform in [-4, 4). agree and bucket follow the rewards as the vote defines them (a member agrees when
 * chosen - rejected > margin; buckets by high_frac 0.5). Pair ids: ids[] when given, else increasing
 * with gaps. Corpus "toy", split "harmless"; free with votes_free. */
static inline void make_votes(Votes *v, int64_t n, int nm, float margin, int integer, const int64_t *ids) {
    memset(v, 0, sizeof *v);
    snprintf(v->corpus, sizeof v->corpus, "toy");
    snprintf(v->split, sizeof v->split, "harmless");
    v->n_members = nm;
    for (int m = 0; m < nm; m++) snprintf(v->members[m], sizeof v->members[m], "m%d", m);
    v->margin = margin;
    v->high_frac = 0.5f;
    v->n = n;
    v->pair_id = xmalloc(sizeof(int64_t) * (size_t)n + 1);
    v->agree = xmalloc(sizeof(int32_t) * (size_t)n + 1);
    v->bucket = xmalloc((size_t)n + 1);
    v->chosen = xmalloc(sizeof(float) * (size_t)(n * nm) + 1);
    v->rejected = xmalloc(sizeof(float) * (size_t)(n * nm) + 1);
    for (int64_t i = 0; i < n; i++) {
        v->pair_id[i] = ids ? ids[i] : 1 + 3 * i + (int64_t)test_below(3);
        int agree = 0;
        for (int m = 0; m < nm; m++) {
            float c = integer ? (float)((int)test_below(7) - 3) : (float)test_uniform(-4, 4);
            float r = integer ? (float)((int)test_below(7) - 3) : (float)test_uniform(-4, 4);
            v->chosen[(int64_t)m * n + i] = c;
            v->rejected[(int64_t)m * n + i] = r;
            agree += c - r > margin;
        }
        v->agree[i] = agree;
        v->bucket[i] = (uint8_t)bucket_of(agree, nm, v->high_frac);
    }
}
#endif
