/* vote_job.c - per corpus: each rank reads back the score files of the (member, shard) pairs
 * vote_reader() gives it (whichever rank scored them: the score schedule is dynamic), counts agreements,
 * and MPI_Allreduce(SUM) merges agree counts, rewards and pair ids (every entry has exactly one reader,
 * the others contribute zeros, so the sums are exact and independent of the rank count). Then buckets, the
 * votes file (collective) and the stats JSON. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "../score/score_h5.h"
#include "quorum/common.h"
#include "quorum/corpus.h"
#include "quorum/score.h"
#include "quorum/vote.h"

/* The /pair_id dataset of shard k (corpus.h layout), checked to hold n ids. */
static int shard_pair_ids(const char *cdir, int64_t k, int64_t n, int64_t *ids) {
    char *path = shard_path(cdir, k);
    h5q_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = f < 0 ? quorum_input_error(path, "cannot open the shard (re-run `quorum ingest`)") : 0;
    hsize_t d[1] = {(hsize_t)n};
    if (rc == 0) rc = h5q_read_all(f, path, "pair_id", H5T_NATIVE_INT64, 1, d, ids);
    if (f >= 0) H5Fclose(f);
    free(path);
    return rc;
}

static void votes_alloc(Votes *v, const Job *job, const JobCorpus *c, int64_t n) {
    memset(v, 0, sizeof *v);
    snprintf(v->corpus, sizeof v->corpus, "%s", c->name);
    snprintf(v->split, sizeof v->split, "%s", c->split);
    v->n_members = job->n_members;
    for (int m = 0; m < job->n_members; m++) snprintf(v->members[m], sizeof v->members[m], "%s", job->committee[m].name);
    v->margin = job->vote.margin;
    v->high_frac = job->vote.high_frac;
    v->n = n;
    size_t nn = (size_t)n, nm = (size_t)job->n_members;
    v->pair_id = xcalloc(nn, sizeof(int64_t));
    v->agree = xcalloc(nn, sizeof(int32_t));
    v->bucket = xcalloc(nn, 1);
    v->chosen = xcalloc(nn * nm, sizeof(float));
    v->rejected = xcalloc(nn * nm, sizeof(float));
}

/* The rank that reads the score file of (member m, shard k): files spread evenly over the ranks,
 * shard-major, a function of (m, k, N, R) only. */
static int vote_reader(int m, int64_t k, int n_members, int world) {
    return (int)(((int64_t)k * n_members + m) % world);
}

/* This rank's share: the score files of the (member, shard) it owns, into the zero-filled table. */
static int fill_owned(Votes *v, const Job *job, const JobCorpus *c, const CorpusManifest *man, const char *cdir,
                      const uint64_t *member_fp) {
    int rank = quorum_rank(), world = quorum_world();
    int64_t off = 0;
    for (int64_t k = 0; k < man->n_shards; off += man->shard_pairs[k], k++) {
        int64_t nk = man->shard_pairs[k];
        int64_t *ids = NULL;
        for (int m = 0; m < job->n_members; m++) {
            if (vote_reader(m, k, job->n_members, world) != rank) continue;
            if (!ids) {
                ids = xmalloc(sizeof(int64_t) * (size_t)(nk ? nk : 1));
                if (shard_pair_ids(cdir, k, nk, ids) != 0) { free(ids); return -1; }
            }
            float *ch = v->chosen + m * v->n + off, *rj = v->rejected + m * v->n + off;
            char *p = score_path(job->out_dir, c->name, job->committee[m].name, k);
            int rc = score_file_read(p, job->committee[m].name, nk, ids, ch, rj);
            if (rc == 0 && !score_file_current(p, job->committee[m].name, member_fp[m], man->shard_checksum[k]))
                rc = quorum_input_error(p, "stale: its shard_checksum or member_fingerprint is not the current "
                                           "shard's or member's (re-run `quorum score`)");
            free(p);
            if (rc != 0) { free(ids); return -1; }
            for (int64_t i = 0; i < nk; i++) {
                ch[i] += 0.0f; /* -0 -> +0: a sum with other ranks' zeros must not change any bits */
                rj[i] += 0.0f;
                v->agree[off + i] += vote_agrees(ch[i], rj[i], v->margin);
            }
            if (m == 0) memcpy(v->pair_id + off, ids, sizeof(int64_t) * (size_t)nk);
        }
        free(ids);
    }
    return 0;
}

static void merge_all(Votes *v) {
    int64_t n = v->n, nn = n * v->n_members;
    /* MPI counts are int: merge in chunks so a large corpus never overflows one. */
    const int64_t chunk = 1 << 28;
    for (int64_t s = 0; s < n; s += chunk) {
        int cnt = (int)(n - s < chunk ? n - s : chunk);
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, v->pair_id + s, cnt, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, v->agree + s, cnt, MPI_INT32_T, MPI_SUM, MPI_COMM_WORLD));
    }
    for (int64_t s = 0; s < nn; s += chunk) {
        int cnt = (int)(nn - s < chunk ? nn - s : chunk);
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, v->chosen + s, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, v->rejected + s, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    }
}

static int write_stats(const Job *job, const Votes *v, double t0) {
    VoteStats st;
    vote_stats(v, &st);
    int ok = 1;
    if (quorum_rank() == 0) {
        char *path = vote_stats_path(job->out_dir, v->corpus), *json = vote_stats_json(v, &st);
        ok = file_write_atomic(path, json, strlen(json)) == 0;
        if (!ok) quorum_input_error(path, "cannot write the stats file");
        quorum_log("vote: %s: %lld pairs, NoAgree %lld, LowAgree %lld, HighAgree %lld, AllAgree %lld, kappa %.4f "
                   "in %.3f s (%d ranks)", v->corpus, (long long)v->n, (long long)st.bucket_count[0],
                   (long long)st.bucket_count[1], (long long)st.bucket_count[2], (long long)st.bucket_count[3],
                   st.fleiss_kappa, now_seconds() - t0, quorum_world());
        free(path);
        free(json);
    }
    mpiCheck(MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return ok ? 0 : -1;
}

static int vote_corpus(const Job *job, const JobCorpus *c, const uint64_t *member_fp) {
    double t0 = now_seconds();
    char *cdir = corpus_dir(job->out_dir, c->name);
    CorpusManifest man;
    memset(&man, 0, sizeof man);
    int ok = score_manifest_read(&man, cdir) == 0;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (!ok) { free(cdir); return -1; }
    int64_t n = 0;
    for (int64_t k = 0; k < man.n_shards; k++) n += man.shard_pairs[k];
    Votes v;
    votes_alloc(&v, job, c, n);
    ok = fill_owned(&v, job, c, &man, cdir, member_fp) == 0;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    int rc = -1;
    if (ok) {
        merge_all(&v);
        for (int64_t i = 0; i < n; i++) v.bucket[i] = (uint8_t)bucket_of(v.agree[i], v.n_members, v.high_frac);
        char *vp = votes_path(job->out_dir, c->name);
        rc = votes_write(&v, vp);
        free(vp);
        if (rc == 0) rc = write_stats(job, &v, t0);
    }
    votes_free(&v);
    corpus_manifest_free(&man);
    free(cdir);
    return rc;
}

int vote_job(const Job *job) {
    if (job->n_members < 1 || job->n_corpora < 1)
        return quorum_input_error(job->path, "the job needs at least one corpus and one committee member");
    uint64_t member_fp[JOB_MAX_MEMBERS];
    if (member_fingerprints(job, member_fp) != 0) return -1;
    for (int c = 0; c < job->n_corpora; c++)
        if (vote_corpus(job, &job->corpora[c], member_fp) != 0) return -1;
    return 0;
}
