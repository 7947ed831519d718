/* score_file.c - one score file per corpus x member x shard (quorum/score.h): serial HDF5 written to
 * a temp name, fsynced and renamed, so the file's existence is the shard's completion record. */
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quorum/common.h"
#include "quorum/score.h"
#include "quorum/h5.h"

char *score_path(const char *out_dir, const char *corpus, const char *member, int64_t shard) {
    Buf b = {0};
    const char *sep = (*out_dir && out_dir[strlen(out_dir) - 1] != '/') ? "/" : "";
    buf_appendf(&b, "%s%sscores/%s/%s/shard-%05lld.h5", out_dir, sep, corpus, member, (long long)shard);
    return b.data;
}

static int write_datasets(hid_t f, const char *member, uint64_t member_fp, uint64_t shard_checksum, int64_t n,
                          const int64_t *pair_id, const float *chosen, const float *rejected) {
    hsize_t d[1] = {(hsize_t)n};
    int rc = 0;
    rc |= h5q_write_slab(f, "pair_id", H5T_NATIVE_INT64, 1, d, 0, d[0], pair_id, H5P_DEFAULT);
    rc |= h5q_write_slab(f, "chosen", H5T_NATIVE_FLOAT, 1, d, 0, d[0], chosen, H5P_DEFAULT);
    rc |= h5q_write_slab(f, "rejected", H5T_NATIVE_FLOAT, 1, d, 0, d[0], rejected, H5P_DEFAULT);
    rc |= h5q_attr_write_str(f, "member", member);
    rc |= h5q_attr_write_num(f, "shard_checksum", H5T_NATIVE_UINT64, &shard_checksum);
    rc |= h5q_attr_write_num(f, "member_fingerprint", H5T_NATIVE_UINT64, &member_fp);
    return rc ? -1 : 0;
}

/* Temp files of this score file left by a killed run: only this (member, shard)'s owner writes here. */
static void remove_stale_temps(const char *path) {
    char pattern[4200];
    snprintf(pattern, sizeof pattern, "%s.tmp.*", path);
    glob_t g;
    if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; i++) unlink(g.gl_pathv[i]);
    globfree(&g);
}

int score_file_write(const char *path, const char *member, uint64_t member_fp, uint64_t shard_checksum, int64_t n,
                     const int64_t *pair_id, const float *chosen, const float *rejected) {
    h5q_quiet();
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) *slash = 0;
    int ok = !slash || mkdir_p(dir) == 0;
    free(dir);
    if (!ok) return quorum_input_error(path, "cannot create the score folder");
    remove_stale_temps(path);
    /* Built in memory (core driver, no backing store), then written with file_write_atomic: on a full
     * disk an H5Fclose that cannot flush leaves the file open inside HDF5, which then crashes closing
     * it again at MPI_Finalize; a plain write(2) failing does not. */
    char name[4200];
    snprintf(name, sizeof name, "%s.mem.%d", path, (int)getpid());
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    int rc = fapl < 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 ? -1 : 0;
    hid_t f = rc == 0 ? H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) return quorum_input_error(path, "cannot create the score file in memory");
    rc = write_datasets(f, member, member_fp, shard_checksum, n, pair_id, chosen, rejected);
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) rc = -1;
    ssize_t size = rc == 0 ? H5Fget_file_image(f, NULL, 0) : -1;
    char *image = size > 0 ? xmalloc((size_t)size) : NULL;
    if (!image || H5Fget_file_image(f, image, (size_t)size) != size) rc = -1;
    rc |= H5Fclose(f) < 0 ? -1 : 0;
    if (rc == 0) rc = file_write_atomic(path, image, (size_t)size); /* temp + fsync + rename */
    free(image);
    if (rc != 0) return quorum_input_error(path, "writing the score file failed (disk full?)");
    return 0;
}

/* Pair ids must match the shard's, in order; rewards must be finite. */
static int check_scores(const char *path, int64_t n, const int64_t *want, const int64_t *got,
                        const float *chosen, const float *rejected) {
    char where[4200];
    for (int64_t i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            snprintf(where, sizeof where, "%s:%lld:pair_id", path, (long long)i);
            return quorum_input_error(where, "is %lld, the shard has %lld (score file of another corpus?)",
                                      (long long)got[i], (long long)want[i]);
        }
        if (!isfinite(chosen[i]) || !isfinite(rejected[i])) {
            snprintf(where, sizeof where, "%s:%lld:%s", path, (long long)i, isfinite(chosen[i]) ? "rejected" : "chosen");
            return quorum_input_error(where, "reward is not finite");
        }
    }
    return 0;
}

/* The file's `member` attribute must name the member whose folder it is in. */
static int check_member(hid_t f, const char *path, const char *member) {
    char got[256] = "";
    if (h5q_attr_read_str(f, path, "member", got, sizeof got) != 0) return -1;
    if (strcmp(got, member))
        return quorum_input_error(path, "attribute \"member\" is \"%s\", expected \"%s\" (a score file of another member?)",
                                  got, member);
    return 0;
}

int score_file_read(const char *path, const char *member, int64_t n, const int64_t *pair_id, float *chosen,
                    float *rejected) {
    if (!file_exists(path)) return quorum_input_error(path, "missing score file (run `quorum score` first)");
    h5q_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return quorum_input_error(path, "not an HDF5 file (truncated or corrupt?)");
    hsize_t d[1] = {(hsize_t)n};
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)n);
    int rc = check_member(f, path, member);
    if (rc == 0) rc = h5q_read_all(f, path, "pair_id", H5T_NATIVE_INT64, 1, d, ids);
    if (rc == 0) rc = h5q_read_all(f, path, "chosen", H5T_NATIVE_FLOAT, 1, d, chosen);
    if (rc == 0) rc = h5q_read_all(f, path, "rejected", H5T_NATIVE_FLOAT, 1, d, rejected);
    if (rc == 0) rc = check_scores(path, n, pair_id, ids, chosen, rejected);
    H5Fclose(f);
    free(ids);
    return rc;
}

/* A uint64 attribute, or 0 with *ok cleared when it is absent. */
static uint64_t attr_u64(hid_t f, const char *name, int *ok) {
    uint64_t got = 0;
    if (!*ok || H5Aexists(f, name) <= 0) { *ok = 0; return 0; }
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    *ok = a >= 0 && H5Aread(a, H5T_NATIVE_UINT64, &got) >= 0;
    if (a >= 0) H5Aclose(a);
    return got;
}

int score_file_current(const char *path, const char *member, uint64_t member_fp, uint64_t shard_checksum) {
    if (!file_exists(path)) return 0;
    h5q_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 0;
    char got[256] = "";
    int ok = H5Aexists(f, "member") > 0 && h5q_attr_read_str(f, path, "member", got, sizeof got) == 0 &&
             !strcmp(got, member);
    ok = attr_u64(f, "shard_checksum", &ok) == shard_checksum && ok;
    ok = attr_u64(f, "member_fingerprint", &ok) == member_fp && ok;
    H5Fclose(f);
    return ok;
}
