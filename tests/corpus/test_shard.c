/* test_shard.c - shard write/read round trip on random bytes, the checksum against a direct serial
 * FNV-1a written here, offset validation on corrupted shards, truncated files, manifest round trip. */
#include "../test.h"
#include "quorum/corpus.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>


/* Independent FNV-1a: byte loop over one array. */
static uint64_t ref_fnv(const void *p, size_t n, uint64_t h) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ULL; }
    return h;
}

typedef struct { char *bytes; int64_t len; } Str;
static Str rand_str(int maxlen) {
    Str s; s.len = (int64_t)(test_u64() % (uint64_t)(maxlen + 1));
    s.bytes = malloc((size_t)s.len + 1);
    for (int64_t i = 0; i < s.len; i++) s.bytes[i] = (char)(test_u64() & 0xff); /* any byte, NUL included */
    return s;
}

#define NP 37
static Str P[NP], C[NP], R[NP], TX[NP][4];
static int NT[NP], ROLE[NP][4];

static void make_shard(Shard *s) {
    ShardBuilder b;
    shard_builder_init(&b, "unit", "harmless", 3, 3073, 4096, FORMAT_AUTO);
    for (int i = 0; i < NP; i++) {
        Turn t[4];
        for (int k = 0; k < NT[i]; k++) t[k] = (Turn){(Role)ROLE[i][k], TX[i][k].bytes, TX[i][k].len};
        Pair p = {3073 + 7 * i, P[i].bytes, P[i].len, C[i].bytes, C[i].len, R[i].bytes, R[i].len, t, NT[i], 1 + i % 3};
        shard_builder_add(&b, &p);
    }
    shard_builder_finish(&b, s);
}

static uint64_t ref_checksum(void) {
    uint64_t h = FNV1A64_INIT;
    int64_t x;
    for (int i = 0; i < NP; i++) { x = 3073 + 7 * i; h = ref_fnv(&x, 8, h); }
    Str *cols[3] = {P, C, R};
    for (int c = 0; c < 3; c++) {
        x = 0; h = ref_fnv(&x, 8, h);
        for (int i = 0; i < NP; i++) { x += cols[c][i].len; h = ref_fnv(&x, 8, h); }
        for (int i = 0; i < NP; i++) h = ref_fnv(cols[c][i].bytes, (size_t)cols[c][i].len, h);
    }
    x = 0; h = ref_fnv(&x, 8, h);
    for (int i = 0; i < NP; i++) { x += NT[i]; h = ref_fnv(&x, 8, h); }
    for (int i = 0; i < NP; i++) for (int k = 0; k < NT[i]; k++) { uint8_t r = (uint8_t)ROLE[i][k]; h = ref_fnv(&r, 1, h); }
    x = 0; h = ref_fnv(&x, 8, h);
    for (int i = 0; i < NP; i++) for (int k = 0; k < NT[i]; k++) { x += TX[i][k].len; h = ref_fnv(&x, 8, h); }
    for (int i = 0; i < NP; i++) for (int k = 0; k < NT[i]; k++) h = ref_fnv(TX[i][k].bytes, (size_t)TX[i][k].len, h);
    return h;
}

static int same(const char *a, int64_t na, const Str *s) { return na == s->len && memcmp(a, s->bytes, (size_t)na) == 0; }

static void test_round_trip(const char *dir) {
    for (int i = 0; i < NP; i++) {
        P[i] = rand_str(i == 5 ? 0 : 300); C[i] = rand_str(200); R[i] = rand_str(200);
        NT[i] = (int)(test_u64() % 5);
        for (int k = 0; k < NT[i]; k++) { ROLE[i][k] = (int)(test_u64() % 3); TX[i][k] = rand_str(80); }
    }
    Shard w, r;
    make_shard(&w);
    CHECK(w.n == NP);
    CHECK(shard_checksum(&w) == ref_checksum());
    char *path = shard_path(dir, 3);
    CHECK(strstr(path, "/shard-00003.h5") != NULL);
    REQUIRE(shard_write(&w, path) == 0);
    memset(&r, 0xAB, sizeof r); /* poison */
    REQUIRE(shard_read(&r, path) == 0);
    CHECK(r.n == NP && r.index == 3 && r.first_line == 3073 && r.last_line == 4096 && r.format == FORMAT_AUTO);
    CHECK(!strcmp(r.corpus, "unit") && !strcmp(r.split, "harmless"));
    CHECK(shard_checksum(&r) == ref_checksum());
    int ok = 1;
    for (int i = 0; i < NP; i++) {
        Pair p;
        memset(&p, 0xCD, sizeof p);
        shard_get_pair(&r, i, &p);
        ok &= p.id == 3073 + 7 * i && p.format == 1 + i % 3 && p.n_turns == NT[i];
        ok &= same(p.prompt, p.prompt_len, &P[i]) && same(p.chosen, p.chosen_len, &C[i]) && same(p.rejected, p.rejected_len, &R[i]);
        for (int k = 0; k < NT[i] && k < p.n_turns; k++)
            ok &= (int)p.turns[k].role == ROLE[i][k] && same(p.turns[k].text, p.turns[k].len, &TX[i][k]);
    }
    CHECK(ok);
    shard_free(&r);

    /* a decreasing offset (last one still right) must be refused */
    int64_t keep = w.chosen_off[4];
    w.chosen_off[4] = w.chosen_off[5] + 1;
    char *bad = path_join(dir, "bad.h5");
    REQUIRE(shard_write(&w, bad) == 0);
    CHECK(shard_read(&r, bad) == -1);
    w.chosen_off[4] = keep;
    /* a turn role out of range */
    if (w.n_turns_total > 0) {
        uint8_t keep_role = w.turn_role[0];
        w.turn_role[0] = 7;
        REQUIRE(shard_write(&w, bad) == 0);
        CHECK(shard_read(&r, bad) == -1);
        w.turn_role[0] = keep_role;
    }
    /* a truncated copy and a missing file */
    size_t len; const char *err;
    char *bytes = file_read_all(path, &len, &err);
    REQUIRE(bytes != NULL);
    REQUIRE(file_write_atomic(bad, bytes, len / 2) == 0);
    CHECK(shard_read(&r, bad) == -1);
    char *missing = path_join(dir, "missing.h5");
    CHECK(shard_read(&r, missing) == -1);
    free(bytes); free(missing);
    /* arrays built by hand without pair_format: every pair takes the shard's format attribute */
    free(w.pair_format);
    w.pair_format = NULL;
    REQUIRE(shard_write(&w, bad) == 0);
    REQUIRE(shard_read(&r, bad) == 0);
    Pair q;
    shard_get_pair(&r, NP - 1, &q);
    CHECK(q.format == FORMAT_AUTO && r.pair_format[0] == FORMAT_AUTO && shard_checksum(&r) == ref_checksum());
    shard_free(&r);
    free(bad); free(path);

    /* an empty shard (every line rejected) round-trips too */
    ShardBuilder b;
    Shard e, e2;
    shard_builder_init(&b, "unit", "s", 0, 1, 5, FORMAT_HH);
    shard_builder_finish(&b, &e);
    char *ep = shard_path(dir, 0);
    REQUIRE(shard_write(&e, ep) == 0);
    REQUIRE(shard_read(&e2, ep) == 0);
    CHECK(e2.n == 0 && e2.n_turns_total == 0 && shard_checksum(&e2) == shard_checksum(&e));
    shard_free(&e); shard_free(&e2); free(ep);
    shard_free(&w);
}

static void test_manifest(const char *dir) {
    CorpusManifest m = {0}, r;
    strcpy(m.name, "unit"); strcpy(m.split, "harmless"); strcpy(m.source, "/x/y.jsonl.gz");
    m.format = FORMAT_CHAT; m.shard_size = 1024; m.n_shards = 3;
    m.n_pairs = 0;
    m.shard_checksum = calloc(3, 8); m.shard_pairs = calloc(3, 8);
    for (int k = 0; k < 3; k++) { m.shard_checksum[k] = test_u64(); m.shard_pairs[k] = (int64_t)(test_u64() % 1000); m.n_pairs += m.shard_pairs[k]; }
    m.n_rejected = 17; m.n_lines = m.n_pairs + 17;
    m.source_checksum = test_u64() | (1ULL << 63);
    REQUIRE(corpus_manifest_write(&m, dir) == 0);
    memset(&r, 0x5A, sizeof r);
    REQUIRE(corpus_manifest_read(&r, dir) == 0);
    CHECK(!strcmp(r.name, "unit") && !strcmp(r.split, "harmless") && !strcmp(r.source, m.source));
    CHECK(r.format == FORMAT_CHAT && r.shard_size == 1024 && r.n_shards == 3);
    CHECK(r.n_lines == m.n_lines && r.n_pairs == m.n_pairs && r.n_rejected == 17);
    CHECK(r.source_checksum == m.source_checksum);
    for (int k = 0; k < 3; k++) CHECK(r.shard_checksum[k] == m.shard_checksum[k] && r.shard_pairs[k] == m.shard_pairs[k]);
    corpus_manifest_free(&r);
    /* a manifest that breaks the invariant is refused */
    m.n_lines += 1;
    REQUIRE(corpus_manifest_write(&m, dir) == 0);
    CHECK(corpus_manifest_read(&r, dir) == -1);
    CHECK(corpus_manifest_read(&r, "/nonexistent/corpus") == -1);
    free(m.shard_checksum); free(m.shard_pairs);

    char *d = corpus_dir("out/demo", "harmless");
    CHECK(!strcmp(d, "out/demo/corpora/harmless"));
    free(d);
}

int main(void) {
    char dir[] = "/tmp/quorum-shard-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    test_round_trip(dir);
    test_manifest(dir);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    TEST_MAIN_END();
}
