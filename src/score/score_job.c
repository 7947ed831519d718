/* score_job.c - the committee scoring loop over MPI_COMM_WORLD (quorum/score.h).
 *
 * Each rank lists its (member, corpus, shard) work items, member-major so a rank that hosts several
 * members loads each model once, and drops the ones whose score file is already current. Then rounds:
 * every rank scores at most one shard, and one allreduce(SUM) per round carries the stop flag, errors,
 * "work left" and progress. So a stop signal, an error or the end are seen by every rank at the same
 * round, and every rank returns the same value. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mpi.h>

#include "quorum/common.h"
#include "quorum/score.h"
#include "quorum/signal.h"

int score_owner(int member, int64_t shard, int n_members, int world) {
    if (world < n_members) return member % world;           /* rank hosts members r, r+R, ... whole */
    int count = (world - member + n_members - 1) / n_members; /* ranks m, m+N, m+2N, ... < world */
    return member + n_members * (int)(shard % count);
}

typedef struct {
    int corpus, member;
    int64_t shard;
} WorkItem;

typedef struct {
    const Job *job;
    int use[JOB_MAX_CORPORA];                   /* corpora selected by --corpus */
    CorpusManifest man[JOB_MAX_CORPORA];
    char *dir[JOB_MAX_CORPORA];                 /* corpus folders */
    int loaded[JOB_MAX_CORPORA];                /* manifest read (to free) */
    WorkItem *items;
    int64_t n_items, todo_pairs, skipped_files;
    uint64_t member_fp[JOB_MAX_MEMBERS];        /* member_fingerprint(), computed by rank 0 */
    Member member;                              /* the open member, or member_idx < 0 */
    int member_idx;
    int64_t files_written;                      /* by this rank, for the test hook */
} ScoreRun;

int score_manifest_read(CorpusManifest *m, const char *cdir) {
    char *path = path_join(cdir, "manifest.json");
    int present = file_exists(path);
    free(path);
    if (!present) { /* the common mistake: said once, by rank 0, not once per rank */
        if (quorum_rank() == 0) quorum_input_error(cdir, "no manifest.json: corpus not ingested (run `quorum ingest`)");
        return -1;
    }
    return corpus_manifest_read(m, cdir);
}

static int load_manifests(ScoreRun *run, const char *only) {
    const Job *job = run->job;
    int found = 0;
    for (int c = 0; c < job->n_corpora; c++) {
        run->use[c] = !only || !strcmp(only, job->corpora[c].name);
        if (!run->use[c]) continue;
        found = 1;
        run->dir[c] = corpus_dir(job->out_dir, job->corpora[c].name);
        if (score_manifest_read(&run->man[c], run->dir[c]) != 0) return -1;
        run->loaded[c] = 1;
    }
    if (only && !found) return quorum_input_error(job->path, "--corpus %s: no such corpus in the job", only);
    return 0;
}

/* Every member is fingerprinted, so one run names every missing member. */
int member_fingerprints(const Job *job, uint64_t *fp) {
    int ok = 1;
    if (quorum_rank() == 0)
        for (int m = 0; m < job->n_members; m++) ok = member_fingerprint(&job->committee[m], &fp[m]) == 0 && ok;
    mpiCheck(MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (job->n_members > 0) mpiCheck(MPI_Bcast(fp, job->n_members, MPI_UINT64_T, 0, MPI_COMM_WORLD));
    return ok ? 0 : -1;
}

/* Score files of shards the manifest no longer has (the input shrank): removed, so none is left behind. */
static void remove_beyond(const ScoreRun *run) {
    const Job *job = run->job;
    for (int c = 0; c < job->n_corpora; c++) {
        if (!run->use[c]) continue;
        for (int m = 0; m < job->n_members; m++) {
            char *p = score_path(job->out_dir, job->corpora[c].name, job->committee[m].name, 0);
            char *slash = strrchr(p, '/');
            *slash = 0;
            dir_remove_shards_from(p, run->man[c].n_shards);
            free(p);
        }
    }
}

/* This rank's work, member-major; shards with a current score file are skipped. */
static void list_work(ScoreRun *run, int rank, int world) {
    const Job *job = run->job;
    int64_t cap = 0;
    for (int m = 0; m < job->n_members; m++) {
        for (int c = 0; c < job->n_corpora; c++) {
            if (!run->use[c]) continue;
            for (int64_t k = 0; k < run->man[c].n_shards; k++) {
                if (score_owner(m, k, job->n_members, world) != rank) continue;
                char *p = score_path(job->out_dir, job->corpora[c].name, job->committee[m].name, k);
                int current = score_file_current(p, job->committee[m].name, run->member_fp[m],
                                                 run->man[c].shard_checksum[k]);
                free(p);
                if (current) { run->skipped_files++; continue; }
                if (run->n_items == cap) {
                    cap = cap ? 2 * cap : 64;
                    run->items = xrealloc(run->items, sizeof(WorkItem) * (size_t)cap);
                }
                run->items[run->n_items++] = (WorkItem){c, m, k};
                run->todo_pairs += run->man[c].shard_pairs[k];
            }
        }
    }
}

static int read_checked_shard(ScoreRun *run, const WorkItem *w, Shard *s);

/* Before any scoring: every member this rank hosts (its template only, no weights) renders every pair
 * of the shards the rank will score with it (Member.check), so a dialogue a template refuses stops the
 * job at its start. Items are member-major. 0 or -1 after one line. */
static int check_members(ScoreRun *run) {
    int rc = 0;
    for (int64_t i = 0; i < run->n_items && rc == 0;) {
        int m = run->items[i].member;
        Member mem;
        rc = member_open_check(&mem, &run->job->committee[m]);
        for (; i < run->n_items && run->items[i].member == m && rc == 0 && mem.check; i++) {
            Shard s;
            if ((rc = read_checked_shard(run, &run->items[i], &s)) != 0) break;
            Pair *pairs = xmalloc(sizeof(Pair) * (size_t)(s.n + 1));
            for (int64_t j = 0; j < s.n; j++) shard_get_pair(&s, j, &pairs[j]);
            mem.corpus = run->job->corpora[run->items[i].corpus].name;
            rc = mem.check(&mem, pairs, s.n);
            free(pairs);
            shard_free(&s);
        }
        while (i < run->n_items && run->items[i].member == m) i++;
        member_close(&mem);
    }
    return rc;
}

/* Opens member m unless it is the one already open (one model in memory at a time). */
static int member_switch(ScoreRun *run, int m) {
    if (run->member_idx == m) return 0;
    if (run->member_idx >= 0) member_close(&run->member);
    run->member_idx = -1;
    if (member_open(&run->member, &run->job->committee[m]) != 0) return -1;
    run->member_idx = m;
    return 0;
}

static int read_checked_shard(ScoreRun *run, const WorkItem *w, Shard *s) {
    char *path = shard_path(run->dir[w->corpus], w->shard);
    int rc = shard_read(s, path);
    const CorpusManifest *man = &run->man[w->corpus];
    if (rc == 0 && (s->n != man->shard_pairs[w->shard] || shard_checksum(s) != man->shard_checksum[w->shard])) {
        rc = quorum_input_error(path, "does not match manifest.json (pairs or checksum): re-run `quorum ingest`");
        shard_free(s);
    }
    free(path);
    return rc;
}

static void test_hooks_after_write(ScoreRun *run, int rank, int world) {
    const char *die = getenv("QUORUM_TEST_DIE_AFTER_SHARDS");
    const char *slow = getenv("QUORUM_TEST_SLOW_SHARD_MS");
    if (die && rank == (world > 1 ? 1 : 0) && run->files_written == atoll(die)) {
        quorum_log_all("test hook: SIGKILL after %lld score files", (long long)run->files_written);
        raise(SIGKILL);
    }
    if (slow) usleep((useconds_t)(atoi(slow) * 1000));
    /* Holds the stage while the named file exists (at most 120 s): a test that needs this run still busy
     * (a lock test) removes the file when it is done, instead of racing a timer. */
    const char *hold = getenv("QUORUM_TEST_HOLD_FILE");
    for (int i = 0; hold && i < 2400 && access(hold, F_OK) == 0; i++) usleep(50000);
}

/* Non-finite rewards stop the stage: one line naming the member, its model folder and the pair. */
static int check_finite(const ScoreRun *run, const WorkItem *w, const Shard *s, const float *chosen,
                        const float *rejected) {
    const JobMember *m = &run->job->committee[w->member];
    for (int64_t i = 0; i < s->n; i++) {
        if (isfinite(chosen[i]) && isfinite(rejected[i])) continue;
        char where[1600];
        snprintf(where, sizeof where, "%s: member \"%s\": corpus \"%s\" pair %lld", m->path, m->name,
                 run->job->corpora[w->corpus].name, (long long)s->pair_id[i]);
        return quorum_input_error(where, "reward of the %s response is %g: the model computes non-finite values "
                                  "(check its weights); nothing was written for this shard",
                                  isfinite(chosen[i]) ? "rejected" : "chosen",
                                  (double)(isfinite(chosen[i]) ? rejected[i] : chosen[i]));
    }
    return 0;
}

/* Scores one shard with one member and writes its score file. 0 or -1. */
static int score_item(ScoreRun *run, const WorkItem *w) {
    const Job *job = run->job;
    if (member_switch(run, w->member) != 0) return -1;
    Shard s;
    if (read_checked_shard(run, w, &s) != 0) return -1;
    Pair *pairs = xmalloc(sizeof(Pair) * (size_t)s.n);
    float *chosen = xmalloc(sizeof(float) * (size_t)s.n), *rejected = xmalloc(sizeof(float) * (size_t)s.n);
    for (int64_t i = 0; i < s.n; i++) shard_get_pair(&s, i, &pairs[i]);
    run->member.corpus = job->corpora[w->corpus].name;
    int rc = run->member.score(&run->member, pairs, s.n, chosen, rejected);
    if (rc == 0) rc = check_finite(run, w, &s, chosen, rejected);
    if (rc == 0) {
        char *p = score_path(job->out_dir, job->corpora[w->corpus].name, job->committee[w->member].name, w->shard);
        rc = score_file_write(p, job->committee[w->member].name, run->member_fp[w->member],
                              run->man[w->corpus].shard_checksum[w->shard],
                              s.n, s.pair_id, chosen, rejected);
        free(p);
    }
    free(pairs);
    free(chosen);
    free(rejected);
    shard_free(&s);
    return rc;
}

static void progress(int64_t done, int64_t total, double t0, double *last, int final) {
    double t = now_seconds();
    if (!final && t - *last < 2.0) return;
    *last = t;
    double rate = done / (t - t0 > 1e-9 ? t - t0 : 1e-9);
    double eta = rate > 0 ? (total - done) / rate : 0;
    quorum_log("score: %lld/%lld pair-scores (%.1f%%), %.0f/s, ETA %.0fs", (long long)done, (long long)total,
               total ? 100.0 * done / total : 100.0, rate, eta);
}

/* The rounds. Returns 0, -1 or QUORUM_EXIT_REQUEUE, identical on every rank. */
static int score_rounds(ScoreRun *run, int rank, int world) {
    int64_t counts[2] = {run->todo_pairs, run->skipped_files};
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
    quorum_log("score: %d rank(s), %d member(s): %lld pair-scores to do, %lld shard score files already current",
               world, run->job->n_members, (long long)counts[0], (long long)counts[1]);
    double t0 = now_seconds(), last = t0;
    int64_t pos = 0, done = 0;
    int err = check_members(run) != 0;
    for (;;) {
        int64_t f[4] = {quorum_stop_requested(), err, pos < run->n_items, done}; /* stop, err, more, done */
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, f, 4, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
        progress(f[3], counts[0], t0, &last, !f[2] || f[1] || f[0]);
        if (f[1]) return -1;
        if (!f[2]) return 0;
        if (f[0]) {
            quorum_log("score: stop signal: shards in flight written; exit %d (requeue; a re-run resumes)",
                       QUORUM_EXIT_REQUEUE);
            return QUORUM_EXIT_REQUEUE;
        }
        if (pos < run->n_items && !err) {
            const WorkItem *w = &run->items[pos++];
            err = score_item(run, w) != 0;
            if (!err) {
                done += run->man[w->corpus].shard_pairs[w->shard];
                run->files_written++;
                test_hooks_after_write(run, rank, world);
            }
        }
    }
}

int score_job_corpus(const Job *job, const char *only_corpus) {
    int rank = quorum_rank(), world = quorum_world();
    quorum_signals_install();
    ScoreRun run;
    memset(&run, 0, sizeof run);
    run.job = job;
    run.member_idx = -1;
    int ok = job->n_members > 0 && job->n_corpora > 0;
    if (!ok) quorum_input_error(job->path, "the job needs at least one corpus and one committee member");
    else ok = load_manifests(&run, only_corpus) == 0;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    ok = member_fingerprints(job, run.member_fp) == 0 && ok;
    int rc = -1;
    if (ok && rank == 0) remove_beyond(&run);
    if (ok) {
        list_work(&run, rank, world);
        rc = score_rounds(&run, rank, world);
    }
    if (run.member_idx >= 0) member_close(&run.member);
    for (int c = 0; c < job->n_corpora; c++) {
        if (run.loaded[c]) corpus_manifest_free(&run.man[c]);
        free(run.dir[c]);
    }
    free(run.items);
    return rc;
}

int score_job(const Job *job) { return score_job_corpus(job, NULL); }
