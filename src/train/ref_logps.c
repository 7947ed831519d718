/* ref_logps.c - the DPO reference log-probs, computed once with the initial weights over all ranks and
 * cached in <out>/ref_logps.h5 so the reference model never has to stay in memory:
 *   /pair_id int64[n], /chosen float32[n], /rejected float32[n]
 *   attr key (uint64): FNV-1a of the token data, the initial params and a 0 (values are
 *   log-prob SUMS; earlier versions could store length-averaged ones under key flag 1); a file
 *   whose key or n disagrees is stale and recomputed. Written to a temp name, then renamed. */
#include "quorum/common.h"
#include "quorum/h5.h"
#include "quorum/train.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t ref_key(const TrainModel *m, const TokPairs *d) {
    const int sums = 0;
    uint64_t h = FNV1A64_INIT;
    h = fnv1a64(d->ids, d->n_ids * sizeof(int32_t), h);
    h = fnv1a64(d->chosen_off, (d->n + 1) * sizeof(int64_t), h);
    h = fnv1a64(d->prompt_len, d->n * sizeof(int32_t), h);
    h = fnv1a64(m->params, m->n_params * sizeof(float), h);
    if (m->precision == DT_BF16) h = fnv1a64("bf16", 4, h); /* bf16 GEMMs give other log-probs (fp32 keys as before) */
    return fnv1a64(&sums, sizeof sums, h);
}

static int ds_read(hid_t f, const char *name, hid_t type, void *dst, int64_t n) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return -1;
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(ds);
    hssize_t got = H5Sget_simple_extent_npoints(sp);
    int rc = got == n && H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) >= 0 ? 0 : -1;
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

/* 0 when the cache exists, is current, and was read into d. */
static int cache_read(const char *path, TokPairs *d, uint64_t key) {
    if (!file_exists(path)) return -1;
    int rc = -1;
    H5E_BEGIN_TRY { /* a damaged cache is silently recomputed */
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            uint64_t k = 0;
            hid_t a = H5Aexists(f, "key") > 0 ? H5Aopen(f, "key", H5P_DEFAULT) : -1;
            if (a >= 0 && H5Aread(a, H5T_NATIVE_UINT64, &k) >= 0 && k == key &&
                !ds_read(f, "chosen", H5T_NATIVE_FLOAT, d->ref_chosen, d->n) &&
                !ds_read(f, "rejected", H5T_NATIVE_FLOAT, d->ref_rejected, d->n))
                rc = 0;
            if (a >= 0) H5Aclose(a);
            H5Fclose(f);
        }
    } H5E_END_TRY;
    return rc;
}

static int cache_write(const char *path, const TokPairs *d, uint64_t key) {
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return quorum_input_error(tmp, "cannot create reference log-prob file");
    h5Check(h5q_write_1d(f, "pair_id", H5T_NATIVE_INT64, d->n, d->pair_id), "pair_id");
    h5Check(h5q_write_1d(f, "chosen", H5T_NATIVE_FLOAT, d->n, d->ref_chosen), "chosen");
    h5Check(h5q_write_1d(f, "rejected", H5T_NATIVE_FLOAT, d->n, d->ref_rejected), "rejected");
    h5Check(h5q_attr_write_num(f, "key", H5T_NATIVE_UINT64, &key), "key");
    h5Check(H5Fclose(f), tmp);
    if (rename(tmp, path)) return quorum_input_error(path, "cannot rename the temp file into place");
    return 0;
}

/* Forward of pairs [lo, hi) in batches of `batch`; values into ch/rj (already offset to lo). */
static void ref_forward_range(TrainModel *m, const TokPairs *d, int64_t lo, int64_t hi, int batch, float *ch,
                              float *rj) {
    int32_t *ids = NULL; uint8_t *mask = NULL; int *lens = NULL; size_t cap = 0;
    int64_t *idx = xmalloc(batch * sizeof(int64_t));
    float *out = xmalloc(2 * batch * sizeof(float));
    for (int64_t s = lo; s < hi; s += batch) {
        int b = (int)(hi - s < batch ? hi - s : batch);
        for (int i = 0; i < b; i++) idx[i] = s + i;
        int T = batch_build(d, idx, b, &ids, &mask, &lens, &cap);
        m->forward(m, ids, lens, mask, 2 * b, T, out);
        for (int j = 0; j < 2 * b; j++) (j < b ? ch : rj)[s - lo + (j % b)] = out[j];
    }
    free(ids); free(mask); free(lens); free(idx); free(out);
}

int ref_logps_compute(TrainModel *m, TokPairs *d, int batch, const char *path) {
    int rank = quorum_rank(), R = quorum_world();
    free(d->ref_chosen); free(d->ref_rejected);
    d->ref_chosen = xmalloc(d->n * sizeof(float));
    d->ref_rejected = xmalloc(d->n * sizeof(float));
    uint64_t key = ref_key(m, d);
    int ok = path && cache_read(path, d, key) == 0, all_ok = 0;
    mpiCheck(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (all_ok) {
        quorum_log("reference log-probs: reusing %s", path);
        return 0;
    }
    int *counts = xmalloc(R * sizeof(int)), *displs = xmalloc(R * sizeof(int));
    for (int r = 0; r < R; r++) {
        displs[r] = (int)(d->n * r / R);
        counts[r] = (int)(d->n * (r + 1) / R) - displs[r];
    }
    ref_forward_range(m, d, displs[rank], displs[rank] + counts[rank], batch, d->ref_chosen + displs[rank],
                      d->ref_rejected + displs[rank]);
    mpiCheck(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, d->ref_chosen, counts, displs, MPI_FLOAT, MPI_COMM_WORLD));
    mpiCheck(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, d->ref_rejected, counts, displs, MPI_FLOAT, MPI_COMM_WORLD));
    free(counts); free(displs);
    int rc = 0;
    if (rank == 0 && path) rc = cache_write(path, d, key);
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return rc;
}
