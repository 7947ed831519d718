/* test_votes.c - buckets against the table in vote.h worked by hand, votes_path, and the votes file:
 * random data written collectively (run with 1 and 3 ranks) and read back bit-exact on every rank;
 * truncated and wrongly-shaped files are refused with an error, not used.
 * usage: test_votes <scratch dir> */
#include "../test.h"
#include "quorum/common.h"
#include "quorum/vote.h"

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <mpi.h>
#include <string.h>
#include <unistd.h>

static void test_buckets(void) {
    /* N = 1: NoAgree or AllAgree only. */
    CHECK(bucket_of(0, 1, 0.5f) == BUCKET_NO && bucket_of(1, 1, 0.5f) == BUCKET_ALL);
    /* N = 2, h = 1: NoAgree, HighAgree, AllAgree. */
    CHECK(bucket_of(0, 2, 0.5f) == BUCKET_NO && bucket_of(1, 2, 0.5f) == BUCKET_HIGH);
    CHECK(bucket_of(2, 2, 0.5f) == BUCKET_ALL);
    /* N = 3, h = ceil(1.5) = 2. */
    CHECK(bucket_of(1, 3, 0.5f) == BUCKET_LOW && bucket_of(2, 3, 0.5f) == BUCKET_HIGH);
    CHECK(bucket_of(3, 3, 0.5f) == BUCKET_ALL);
    /* N = 4, h = 2. */
    CHECK(bucket_of(1, 4, 0.5f) == BUCKET_LOW && bucket_of(2, 4, 0.5f) == BUCKET_HIGH);
    CHECK(bucket_of(3, 4, 0.5f) == BUCKET_HIGH);
    /* N = 5, high_frac 0.6: h = 3 exactly (0.6f * 5 is 3.0000001 in float; must not become 4). */
    CHECK(bucket_of(2, 5, 0.6f) == BUCKET_LOW && bucket_of(3, 5, 0.6f) == BUCKET_HIGH);
    /* N = 5, high_frac 1.0: h = 5, so 1..4 are all LowAgree. */
    CHECK(bucket_of(4, 5, 1.0f) == BUCKET_LOW && bucket_of(5, 5, 1.0f) == BUCKET_ALL);
    CHECK(!strcmp(bucket_name(BUCKET_NO), "NoAgree") && !strcmp(bucket_name(BUCKET_LOW), "LowAgree"));
    CHECK(!strcmp(bucket_name(BUCKET_HIGH), "HighAgree") && !strcmp(bucket_name(BUCKET_ALL), "AllAgree"));
    char *p = votes_path("out/x", "harmless");
    CHECK(!strcmp(p, "out/x/votes/harmless.h5"));
    free(p);
    p = votes_path("out/x/", "h");
    CHECK(!strcmp(p, "out/x/votes/h.h5"));
    free(p);
    p = vote_stats_path("out/x", "h");
    CHECK(!strcmp(p, "out/x/votes/h.stats.json"));
    free(p);
}



static int votes_equal(const Votes *a, const Votes *b) {
    size_t n = (size_t)a->n, nm = (size_t)a->n_members;
    if (a->n != b->n || a->n_members != b->n_members) return 0;
    if (strcmp(a->corpus, b->corpus) || strcmp(a->split, b->split)) return 0;
    if (a->margin != b->margin || a->high_frac != b->high_frac) return 0;
    for (int m = 0; m < a->n_members; m++) if (strcmp(a->members[m], b->members[m])) return 0;
    return !memcmp(a->pair_id, b->pair_id, n * 8) && !memcmp(a->agree, b->agree, n * 4) &&
           !memcmp(a->bucket, b->bucket, n) && !memcmp(a->chosen, b->chosen, n * nm * 4) &&
           !memcmp(a->rejected, b->rejected, n * nm * 4);
}

static void test_roundtrip(const char *dir) {
    int rank = quorum_rank();
    /* n not divisible by the rank count, and n smaller than the rank count (empty slabs). */
    int64_t sizes[3] = {1001, 2, 0};
    for (int t = 0; t < 3; t++) {
        Votes v, r;
        make_votes(&v, sizes[t], 1 + t * 2, 0.25f, 0, NULL);
        char name[64];
        snprintf(name, sizeof name, "c%d", t);
        char *path = votes_path(dir, name);
        CHECK(votes_write(&v, path) == 0);
        memset(&r, 0x5a, sizeof r); /* poison */
        CHECKF(votes_read(&r, path) == 0, "%s", path);
        CHECKF(votes_equal(&v, &r), "rank %d, n=%lld", rank, (long long)v.n);
        votes_free(&v);
        votes_free(&r);
        free(path);
    }
}

/* A file with a wrong shape: chosen has N-1 rows. Written serially by rank 0. */
static void write_bad_shape(const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 4, d2[2] = {1, 4};
    int64_t ids[4] = {1, 2, 3, 4};
    int32_t agree[4] = {0, 1, 2, 1}, nm = 2;
    uint8_t bucket[4] = {0, 2, 3, 2};
    float x[4] = {0.5f, 1, 2, 3}, margin = 0, hf = 0.5f;
    hid_t s1 = H5Screate_simple(1, &n, NULL), s2 = H5Screate_simple(2, d2, NULL), sc = H5Screate(H5S_SCALAR);
    const char *names[5] = {"pair_id", "agree", "bucket", "chosen", "rejected"};
    hid_t types[5] = {H5T_NATIVE_INT64, H5T_NATIVE_INT32, H5T_NATIVE_UINT8, H5T_NATIVE_FLOAT, H5T_NATIVE_FLOAT};
    const void *data[5] = {ids, agree, bucket, x, x};
    for (int k = 0; k < 5; k++) {
        hid_t d = H5Dcreate2(f, names[k], types[k], k < 3 ? s1 : s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, types[k], H5S_ALL, H5S_ALL, H5P_DEFAULT, data[k]);
        H5Dclose(d);
    }
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 8);
    const char *attrs[4][2] = {{"members", "a,b"}, {"corpus", "c"}, {"split", "s"}, {NULL, NULL}};
    for (int k = 0; attrs[k][0]; k++) {
        char buf[8] = {0};
        strcpy(buf, attrs[k][1]);
        hid_t a = H5Acreate2(f, attrs[k][0], str, sc, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, str, buf);
        H5Aclose(a);
    }
    hid_t a = H5Acreate2(f, "n_members", H5T_NATIVE_INT32, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, &nm);
    H5Aclose(a);
    a = H5Acreate2(f, "margin", H5T_NATIVE_FLOAT, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_FLOAT, &margin);
    H5Aclose(a);
    a = H5Acreate2(f, "high_frac", H5T_NATIVE_FLOAT, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_FLOAT, &hf);
    H5Aclose(a);
    H5Tclose(str);
    H5Sclose(s1); H5Sclose(s2); H5Sclose(sc);
    H5Fclose(f);
}

static void test_bad_files(const char *dir) {
    if (quorum_rank() != 0) return;
    Votes r;
    char *p = path_join(dir, "bad_shape.h5");
    write_bad_shape(p);
    CHECK(votes_read(&r, p) != 0 && r.pair_id == NULL);
    free(p);
    /* Truncate a good file to half its size. */
    char *good = votes_path(dir, "c0"), *cut = path_join(dir, "cut.h5");
    size_t len = 0;
    const char *err;
    char *bytes = file_read_all(good, &len, &err);
    REQUIRE(bytes && len > 1000);
    CHECK(file_write_atomic(cut, bytes, len / 2) == 0);
    CHECK(votes_read(&r, cut) != 0);
    CHECK(votes_read(&r, "/nonexistent/votes.h5") != 0);
    free(bytes);
    free(good);
    free(cut);
}

/* Fleiss' kappa, binary, worked by hand:
 *   N=3, agree [3,0,2,1]: P_i = 1, 1, 1/3, 1/3 -> mean 2/3; p = 6/12, P_e = 1/2; kappa = (2/3-1/2)/(1/2) = 1/3
 *   N=3, agree [3,0,3,0]: perfect agreement, P_e = 1/2 -> 1
 *   N=2, agree [1,1,1]: the two raters always differ: P_i = 0, P_e = 1/2 -> -1
 *   undefined: N = 1, no items, or one category only (P_e = 1) -> NaN */
static void test_kappa(void) {
    int32_t a1[4] = {3, 0, 2, 1}, a2[4] = {3, 0, 3, 0}, a3[3] = {1, 1, 1}, a4[2] = {3, 3};
    CHECK(fabs(fleiss_kappa_binary(a1, 4, 3) - 1.0 / 3.0) < 1e-12);
    CHECK(fabs(fleiss_kappa_binary(a2, 4, 3) - 1.0) < 1e-12);
    CHECK(fabs(fleiss_kappa_binary(a3, 3, 2) + 1.0) < 1e-12);
    CHECK(isnan(fleiss_kappa_binary(a3, 3, 1)) && isnan(fleiss_kappa_binary(a1, 0, 3)));
    CHECK(isnan(fleiss_kappa_binary(a4, 2, 3)));
}

/* vote_stats on a 3-member x 4-pair table designed by hand (votes m0 1011, m1 1010, m2 1000; ties
 * disagree), and its JSON. */
static void test_stats(void) {
    float ch[12] = {2, 0, 2, 2, /**/ 2, 1, 5, 1, /**/ 3, 0, 1, 1};
    float rj[12] = {1, 3, 1, 1, /**/ 1, 1, 1, 1, /**/ 1, 1, 2, 1};
    int32_t agree[4] = {3, 0, 2, 1};
    uint8_t bucket[4];
    int64_t ids[4] = {5, 6, 9, 11};
    Votes v;
    memset(&v, 0, sizeof v);
    strcpy(v.corpus, "toy");
    strcpy(v.split, "harmless");
    v.n_members = 3;
    strcpy(v.members[0], "a"); strcpy(v.members[1], "b"); strcpy(v.members[2], "c");
    v.margin = 0.0f;
    v.high_frac = 0.5f;
    v.n = 4;
    for (int i = 0; i < 4; i++) bucket[i] = (uint8_t)bucket_of(agree[i], 3, 0.5f);
    v.pair_id = ids; v.agree = agree; v.bucket = bucket; v.chosen = ch; v.rejected = rj;
    int votes_m0[4] = {1, 0, 1, 1};
    for (int i = 0; i < 4; i++) CHECK(vote_agrees(ch[i], rj[i], 0.0f) == votes_m0[i]);
    CHECK(!vote_agrees(1.0f, 1.0f, 0.0f) && !vote_agrees(1.5f, 1.0f, 0.5f) && vote_agrees(1.5f, 1.0f, 0.25f));
    VoteStats st;
    memset(&st, 0x7f, sizeof st); /* poison */
    vote_stats(&v, &st);
    for (int b = 0; b < BUCKET_COUNT; b++) CHECK(st.bucket_count[b] == 1);
    CHECK(st.member_accuracy[0] == 0.75 && st.member_accuracy[1] == 0.5 && st.member_accuracy[2] == 0.25);
    CHECK(st.mean_margin[0] == 0.0 && st.mean_margin[1] == 1.25 && st.mean_margin[2] == 0.0);
    CHECK(st.agreement[0][1] == 0.75 && st.agreement[1][0] == 0.75 && st.agreement[0][2] == 0.5);
    CHECK(st.agreement[1][2] == 0.75 && st.agreement[2][2] == 1.0);
    CHECK(fabs(st.fleiss_kappa - 1.0 / 3.0) < 1e-12);
    char *js = vote_stats_json(&v, &st);
    cJSON *root = cJSON_Parse(js);
    REQUIRE(root);
    cJSON *low = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "buckets"), "LowAgree");
    CHECK(cJSON_GetObjectItem(low, "count")->valuedouble == 1 && cJSON_GetObjectItem(low, "pct")->valuedouble == 25);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(root, "agreement")) == 3);
    CHECK(cJSON_GetObjectItem(root, "n_pairs")->valuedouble == 4 && cJSON_GetObjectItem(root, "high_frac")->valuedouble == 0.5);
    CHECK(!strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "members"), 2)->valuestring, "c"));
    cJSON_Delete(root);
    free(js);
    /* N = 1: kappa undefined -> JSON null */
    v.n_members = 1;
    vote_stats(&v, &st);
    js = vote_stats_json(&v, &st);
    root = cJSON_Parse(js);
    REQUIRE(root);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(root, "fleiss_kappa")));
    cJSON_Delete(root);
    free(js);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    REQUIRE(argc == 2);
    if (quorum_rank() == 0) { REQUIRE(mkdir_p(argv[1]) == 0); }
    MPI_Barrier(MPI_COMM_WORLD);
    test_buckets();
    test_kappa();
    test_stats();
    test_roundtrip(argv[1]);
    MPI_Barrier(MPI_COMM_WORLD);
    test_bad_files(argv[1]);
    int fails = t_fail_;
    MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (fails && !t_fail_) t_fail_ = 1; /* another rank failed: so does this one */
    TEST_MAIN_END();
}
