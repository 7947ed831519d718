/* votes_io.c - buckets and the votes file (see quorum/vote.h): collective MPI-IO write of one slab per
 * rank to a temp name then rename, independent validated read. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quorum/h5.h"
#include "quorum/common.h"
#include "quorum/vote.h"

const char *bucket_name(Bucket b) {
    static const char *names[BUCKET_COUNT] = {"NoAgree", "LowAgree", "HighAgree", "AllAgree"};
    return (b >= 0 && b < BUCKET_COUNT) ? names[b] : "?";
}

/* h = ceil(high_frac * N). The 1e-4 slack keeps float noise from moving the threshold: 0.6f * 5 is
 * 3.0000001 in float, which a bare ceil would turn into 4. */
static int high_threshold(int n_members, float high_frac) {
    return (int)ceil((double)high_frac * n_members - 1e-4);
}

Bucket bucket_of(int agree, int n_members, float high_frac) {
    if (agree <= 0) return BUCKET_NO;
    if (agree >= n_members) return BUCKET_ALL;
    return agree < high_threshold(n_members, high_frac) ? BUCKET_LOW : BUCKET_HIGH;
}

char *votes_path(const char *out_dir, const char *corpus) {
    Buf b = {0};
    buf_appendf(&b, "%s%svotes/%s.h5", out_dir, (*out_dir && out_dir[strlen(out_dir) - 1] != '/') ? "/" : "",
                corpus);
    return b.data;
}

void votes_free(Votes *v) {
    free(v->pair_id);
    free(v->agree);
    free(v->bucket);
    free(v->chosen);
    free(v->rejected);
    v->pair_id = NULL;
    v->agree = NULL;
    v->bucket = NULL;
    v->chosen = v->rejected = NULL;
}

static void members_join(const Votes *v, Buf *out) {
    buf_append_str(out, "");
    for (int m = 0; m < v->n_members; m++) {
        if (m) buf_append_str(out, ",");
        buf_append_str(out, v->members[m]);
    }
}

int votes_n_voters(const Votes *v) {
    int n = 0;
    for (int m = 0; m < v->n_members; m++) n += v->kind[m] == MEMBER_REWARD;
    return n;
}

/* "kinds" only when some member is not a reward member (quorum/vote.h). */
static int write_kinds(hid_t f, const Votes *v) {
    if (votes_n_voters(v) == v->n_members) return 0;
    Buf b = {0};
    for (int m = 0; m < v->n_members; m++) buf_appendf(&b, "%s%s", m ? "," : "", member_kind_name((MemberKind)v->kind[m]));
    int rc = h5q_attr_write_str(f, "kinds", b.data);
    buf_free(&b);
    return rc;
}

static int read_kinds(hid_t f, Votes *v, const char *path) {
    if (H5Aexists(f, "kinds") <= 0) return 0; /* all reward */
    char joined[JOB_MAX_MEMBERS * 16];
    if (h5q_attr_read_str(f, path, "kinds", joined, sizeof joined) != 0) return -1;
    int m = 0;
    for (char *save = NULL, *t = strtok_r(joined, ",", &save); t; t = strtok_r(NULL, ",", &save), m++) {
        int k = 0;
        while (k < MEMBER_KIND_COUNT && strcmp(member_kind_name((MemberKind)k), t)) k++;
        if (k == MEMBER_KIND_COUNT || m >= v->n_members) {
            char where[4200];
            snprintf(where, sizeof where, "%s:/kinds", path);
            return quorum_input_error(where, "\"%s\" is not a member kind (reward, lm, implicit, judge) or there are "
                                      "more kinds than the %d members", t, v->n_members);
        }
        v->kind[m] = (uint8_t)k;
    }
    if (m != v->n_members) {
        char where[4200];
        snprintf(where, sizeof where, "%s:/kinds", path);
        return quorum_input_error(where, "names %d kinds but n_members is %d", m, v->n_members);
    }
    return 0;
}

static int write_attrs(hid_t f, const Votes *v) {
    Buf names = {0};
    members_join(v, &names);
    int32_t nm = v->n_members;
    int rc = 0;
    rc |= h5q_attr_write_str(f, "members", names.data);
    rc |= h5q_attr_write_num(f, "n_members", H5T_NATIVE_INT32, &nm);
    rc |= h5q_attr_write_num(f, "margin", H5T_NATIVE_FLOAT, &v->margin);
    rc |= h5q_attr_write_num(f, "high_frac", H5T_NATIVE_FLOAT, &v->high_frac);
    rc |= h5q_attr_write_str(f, "corpus", v->corpus);
    rc |= h5q_attr_write_str(f, "split", v->split);
    rc |= write_kinds(f, v);
    buf_free(&names);
    return rc ? -1 : 0;
}

/* Member-major [N][n] -> this rank's contiguous [N][count] slab starting at column `start`. */
static float *pack_columns(const float *x, int rows, int64_t n, int64_t start, int64_t count) {
    float *out = xmalloc(sizeof(float) * (size_t)(rows * count));
    for (int m = 0; m < rows; m++) memcpy(out + m * count, x + m * n + start, sizeof(float) * (size_t)count);
    return out;
}

static int write_slabs(hid_t f, const Votes *v, int64_t start, int64_t count, hid_t dxpl) {
    hsize_t d1[1] = {(hsize_t)v->n}, d2[2] = {(hsize_t)v->n_members, (hsize_t)v->n};
    float *c = pack_columns(v->chosen, v->n_members, v->n, start, count);
    float *r = pack_columns(v->rejected, v->n_members, v->n, start, count);
    int rc = 0;
    rc |= h5q_write_slab(f, "pair_id", H5T_NATIVE_INT64, 1, d1, start, count, v->pair_id + start, dxpl);
    rc |= h5q_write_slab(f, "agree", H5T_NATIVE_INT32, 1, d1, start, count, v->agree + start, dxpl);
    rc |= h5q_write_slab(f, "bucket", H5T_NATIVE_UINT8, 1, d1, start, count, v->bucket + start, dxpl);
    rc |= h5q_write_slab(f, "chosen", H5T_NATIVE_FLOAT, 2, d2, start, count, c, dxpl);
    rc |= h5q_write_slab(f, "rejected", H5T_NATIVE_FLOAT, 2, d2, start, count, r, dxpl);
    free(c);
    free(r);
    return rc ? -1 : 0;
}

int votes_write(const Votes *v, const char *path) {
    int rank = quorum_rank(), world = quorum_world();
    h5q_quiet();
    /* One temp name for every rank: rank 0's pid. */
    int pid = (int)getpid();
    mpiCheck(MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, pid);
    int ok = 1;
    if (rank == 0) {
        char *dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) { *slash = 0; ok = mkdir_p(dir) == 0; }
        free(dir);
    }
    mpiCheck(MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (!ok) return quorum_input_error(path, "cannot create the parent folder");

    hid_t dxpl;
    hid_t f = h5q_create_collective(tmp, &dxpl);
    int local = f >= 0;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &local, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (!local) {
        if (f >= 0) H5Fclose(f);
        H5Pclose(dxpl);
        return quorum_input_error(tmp, "cannot create the votes file (permissions? disk full?)");
    }
    /* Slab of rank r: pairs [n*r/R, n*(r+1)/R), so every pair is written by exactly one rank. */
    int64_t start = v->n * rank / world, end = v->n * (rank + 1) / world;
    int rc = write_attrs(f, v);
    rc |= write_slabs(f, v, start, end - start, dxpl);
    H5Pclose(dxpl);
    rc |= H5Fclose(f) < 0 ? -1 : 0;
    local = rc == 0;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &local, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (rank == 0) {
        if (local) local = rename(tmp, path) == 0;
        if (!local) unlink(tmp);
    }
    mpiCheck(MPI_Bcast(&local, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (!local) return quorum_input_error(path, "writing the votes file failed");
    return 0;
}

/* Splits "a,b,c" into v->members; the count must equal n_members. */
static int members_split(Votes *v, const char *joined, const char *path) {
    int count = 0;
    const char *p = joined;
    while (count < JOB_MAX_MEMBERS) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof v->members[0]) break;
        memcpy(v->members[count], p, len);
        v->members[count][len] = 0;
        count++;
        if (!comma) break;
        p = comma + 1;
    }
    if (count != v->n_members) {
        char where[4200];
        snprintf(where, sizeof where, "%s:/members", path);
        return quorum_input_error(where, "names %d members but n_members is %d", count, v->n_members);
    }
    return 0;
}

static int read_attrs(hid_t f, Votes *v, const char *path) {
    char joined[JOB_MAX_MEMBERS * 257];
    int32_t nm = 0;
    if (h5q_attr_read_num(f, path, "n_members", H5T_NATIVE_INT32, &nm) != 0) return -1;
    if (nm < 1 || nm > JOB_MAX_MEMBERS) {
        char where[4200];
        snprintf(where, sizeof where, "%s:/n_members", path);
        return quorum_input_error(where, "n_members %d is outside 1..%d", (int)nm, JOB_MAX_MEMBERS);
    }
    v->n_members = nm;
    if (h5q_attr_read_num(f, path, "margin", H5T_NATIVE_FLOAT, &v->margin) != 0) return -1;
    if (h5q_attr_read_num(f, path, "high_frac", H5T_NATIVE_FLOAT, &v->high_frac) != 0) return -1;
    if (h5q_attr_read_str(f, path, "corpus", v->corpus, sizeof v->corpus) != 0) return -1;
    if (h5q_attr_read_str(f, path, "split", v->split, sizeof v->split) != 0) return -1;
    if (h5q_attr_read_str(f, path, "members", joined, sizeof joined) != 0) return -1;
    if (members_split(v, joined, path) != 0) return -1;
    return read_kinds(f, v, path);
}

/* agree in 0..N and bucket a valid Bucket, pair by pair: a corrupt file is refused, not used. */
static int check_values(const Votes *v, const char *path) {
    char where[4200];
    for (int64_t i = 0; i < v->n; i++) {
        if (v->agree[i] < 0 || v->agree[i] > v->n_members) {
            snprintf(where, sizeof where, "%s:%lld:agree", path, (long long)i);
            return quorum_input_error(where, "%d is outside 0..%d", (int)v->agree[i], v->n_members);
        }
        if (v->bucket[i] >= BUCKET_COUNT) {
            snprintf(where, sizeof where, "%s:%lld:bucket", path, (long long)i);
            return quorum_input_error(where, "%d is not a bucket", (int)v->bucket[i]);
        }
    }
    return 0;
}

int votes_read(Votes *v, const char *path) {
    memset(v, 0, sizeof *v);
    if (!file_exists(path)) return quorum_input_error(path, "missing votes file (run `quorum vote` first)");
    h5q_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return quorum_input_error(path, "not an HDF5 file (truncated or corrupt?)");
    hsize_t d1[1] = {0}, d2[2] = {0, 0};
    int rc = read_attrs(f, v, path);
    if (rc == 0) rc = h5q_dims(f, path, "pair_id", 1, d1);
    if (rc == 0) {
        v->n = (int64_t)d1[0];
        d2[0] = (hsize_t)v->n_members;
        d2[1] = d1[0];
        size_t n = (size_t)v->n, nm = (size_t)v->n_members;
        v->pair_id = xmalloc(sizeof(int64_t) * n);
        v->agree = xmalloc(sizeof(int32_t) * n);
        v->bucket = xmalloc(n);
        v->chosen = xmalloc(sizeof(float) * n * nm);
        v->rejected = xmalloc(sizeof(float) * n * nm);
        rc = h5q_read_all(f, path, "pair_id", H5T_NATIVE_INT64, 1, d1, v->pair_id);
        if (rc == 0) rc = h5q_read_all(f, path, "agree", H5T_NATIVE_INT32, 1, d1, v->agree);
        if (rc == 0) rc = h5q_read_all(f, path, "bucket", H5T_NATIVE_UINT8, 1, d1, v->bucket);
        if (rc == 0) rc = h5q_read_all(f, path, "chosen", H5T_NATIVE_FLOAT, 2, d2, v->chosen);
        if (rc == 0) rc = h5q_read_all(f, path, "rejected", H5T_NATIVE_FLOAT, 2, d2, v->rejected);
        if (rc == 0) rc = check_values(v, path);
    }
    H5Fclose(f);
    if (rc != 0) votes_free(v);
    return rc;
}
