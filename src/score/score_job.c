/* score_job.c - the score stage over MPI_COMM_WORLD (quorum/score.h): manifests, fingerprints, the list
 * of units still to score (the same on every rank), then one of the two schedules: dynamic (default,
 * score_dispatch.c) or static (score_owner, rounds ended by one allreduce each, kept for comparison
 * and for an MPI without MPI_THREAD_MULTIPLE). Either returns the same value on every rank. */
#include <stdlib.h>
#include <string.h>
#include <mpi.h>

#include "quorum/common.h"
#include "quorum/score.h"
#include "quorum/signal.h"
#include "score_internal.h"

int score_owner(int member, int64_t shard, int n_members, int world) {
    if (world < n_members) return member % world;           /* rank hosts members r, r+R, ... whole */
    int count = (world - member + n_members - 1) / n_members; /* ranks m, m+N, m+2N, ... < world */
    return member + n_members * (int)(shard % count);
}

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

/* Every unit still to score, member-major (the static schedule and the template check's chunks go through
 * members in order: each member opened once per rank), the same list on every rank: rank r checks units u
 * with u % R == r for a current score file, and one allreduce merges the verdicts. */
static void list_units(ScoreRun *run, int rank, int world) {
    const Job *job = run->job;
    int64_t n = 0;
    for (int c = 0; c < job->n_corpora; c++) n += run->use[c] ? job->n_members * run->man[c].n_shards : 0;
    WorkItem *all = xmalloc(sizeof(WorkItem) * (size_t)(n + 1));
    uint8_t *todo = xcalloc((size_t)(n + 1), 1);
    int64_t u = 0;
    for (int m = 0; m < job->n_members; m++)
        for (int c = 0; c < job->n_corpora; c++)
            for (int64_t k = 0; run->use[c] && k < run->man[c].n_shards; k++) all[u++] = (WorkItem){c, m, k};
    for (u = rank; u < n; u += world) {
        const WorkItem *w = &all[u];
        char *p = score_path(job->out_dir, job->corpora[w->corpus].name, job->committee[w->member].name, w->shard);
        todo[u] = !score_file_current(p, job->committee[w->member].name, run->member_fp[w->member],
                                      run->man[w->corpus].shard_checksum[w->shard]);
        free(p);
    }
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, todo, (int)n, MPI_UINT8_T, MPI_MAX, MPI_COMM_WORLD));
    run->units = xmalloc(sizeof(WorkItem) * (size_t)(n + 1));
    for (u = 0; u < n; u++) {
        if (!todo[u]) { run->skipped_files++; continue; }
        run->units[run->n_units++] = all[u];
        run->todo_pairs += run->man[all[u].corpus].shard_pairs[all[u].shard];
    }
    free(all);
    free(todo);
}

void score_progress(int64_t done, int64_t total, double t0, double *last, double every, int final, double eta,
                    const char *extra) {
    double t = now_seconds();
    if (!final && t - *last < every) return;
    *last = t;
    double rate = done / (t - t0 > 1e-9 ? t - t0 : 1e-9);
    if (eta < 0) eta = rate > 0 ? (total - done) / rate : 0;
    quorum_log("score: %lld/%lld pair-scores (%.1f%%), %.0f/s, ETA %.0fs%s%s", (long long)done, (long long)total,
               total ? 100.0 * done / total : 100.0, rate, eta, extra && *extra ? "; " : "", extra ? extra : "");
}

void score_summary(const ScoreRun *run, const char *mode, double wall_s) {
    int rank = quorum_rank(), world = quorum_world();
    double *busy = xcalloc((size_t)world, sizeof(double));
    mpiCheck(MPI_Gather(&run->busy_s, 1, MPI_DOUBLE, busy, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    if (rank == 0 && run->n_units > 0) {
        Buf b = {0};
        double work = 0;
        for (int r = 0; r < world; r++) work += busy[r];
        buf_appendf(&b, "score: %s schedule, %d rank(s): wall %.2f s, work %.2f s (%.1f%% of wall x ranks); busy", mode,
                   world, wall_s, work, wall_s > 0 ? 100.0 * work / (wall_s * world) : 100.0);
        for (int r = 0; r < world; r++) buf_appendf(&b, " r%d %.1f%%", r, wall_s > 0 ? 100.0 * busy[r] / wall_s : 100.0);
        quorum_log("%s", b.data);
        buf_free(&b);
    }
    free(busy);
}

/* The static schedule (score_owner): rounds of one unit per rank, each ended by one allreduce that
 * carries the stop flag, errors, "work left" and progress. Returns 0, -1 or QUORUM_EXIT_REQUEUE, identical
 * on every rank. */
static int score_rounds(ScoreRun *run, int rank, int world) {
    WorkItem *mine = xmalloc(sizeof(WorkItem) * (size_t)(run->n_units + 1));
    int64_t n = 0, pos = 0, done = 0;
    for (int64_t u = 0; u < run->n_units; u++)
        if (score_owner(run->units[u].member, run->units[u].shard, run->job->n_members, world) == rank)
            mine[n++] = run->units[u];
    int err = score_check_units(run, mine, n) != 0;
    double t0 = now_seconds(), last = t0;
    int rc = 0;
    for (;;) {
        int64_t f[4] = {quorum_stop_requested(), err, pos < n, done}; /* stop, err, more, done */
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, f, 4, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
        score_progress(f[3], run->todo_pairs, t0, &last, 2.0, !f[2] || f[1] || f[0], -1, NULL);
        if (f[1] || !f[2] || f[0]) { rc = f[1] ? -1 : !f[2] ? 0 : QUORUM_EXIT_REQUEUE; break; }
        if (pos < n && !err) {
            const WorkItem *w = &mine[pos++];
            double load_s;
            err = score_unit(run, w, &load_s) != 0;
            if (!err) {
                done += run->man[w->corpus].shard_pairs[w->shard];
                score_test_hooks(run, w, rank, world);
            }
        }
    }
    free(mine);
    score_summary(run, "static", now_seconds() - t0);
    return rc;
}

/* "dynamic" (default) or "static" from QUORUM_SCORE_SCHEDULE, as rank 0 sees it; dynamic needs
 * MPI_THREAD_MULTIPLE when there is more than one rank. 1 dynamic, 0 static, -1 bad value. */
static int schedule_dynamic(int world) {
    int dyn = 1;
    if (quorum_rank() == 0) {
        const char *e = getenv("QUORUM_SCORE_SCHEDULE");
        int provided = MPI_THREAD_SINGLE;
        mpiCheck(MPI_Query_thread(&provided));
        if (e && strcmp(e, "static") && strcmp(e, "dynamic"))
            dyn = quorum_input_error("QUORUM_SCORE_SCHEDULE", "\"%s\": accepted: dynamic, static", e);
        else if (e && !strcmp(e, "static"))
            dyn = 0;
        else if (world > 1 && provided < MPI_THREAD_MULTIPLE) {
            quorum_log("score: MPI gives thread level %d, not MPI_THREAD_MULTIPLE: static schedule", provided);
            dyn = 0;
        }
    }
    mpiCheck(MPI_Bcast(&dyn, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return dyn;
}

/* Rank 0 reads every member's parameter count (the cost model) and loaded size (the memory budget); every rank
 * gets them. */
static int member_sizes(ScoreRun *run) {
    int ok = 1;
    if (quorum_rank() == 0)
        for (int m = 0; m < run->job->n_members; m++)
            ok = (run->member_params[m] = member_params(&run->job->committee[m])) > 0 &&
                 (run->member_bytes[m] = member_bytes(&run->job->committee[m])) > 0 && ok;
    mpiCheck(MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD));
    mpiCheck(MPI_Bcast(run->member_params, run->job->n_members, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    mpiCheck(MPI_Bcast(run->member_bytes, run->job->n_members, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    const char *b = getenv("QUORUM_RANK_MEM_GB");
    run->budget_gb = b ? atof(b) : 0;
    return ok ? 0 : -1;
}

int score_job_corpus(const Job *job, const char *only_corpus) {
    int rank = quorum_rank(), world = quorum_world();
    quorum_signals_install();
    ScoreRun run;
    memset(&run, 0, sizeof run);
    run.job = job;
    run.only_corpus = only_corpus;
    int ok = job->n_members > 0 && job->n_corpora > 0;
    if (!ok) quorum_input_error(job->path, "the job needs at least one corpus and one committee member");
    else ok = load_manifests(&run, only_corpus) == 0;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    ok = member_fingerprints(job, run.member_fp) == 0 && ok;
    if (ok) ok = member_sizes(&run) == 0;
    int rc = -1, dyn = ok ? schedule_dynamic(world) : -1;
    if (dyn >= 0 && rank == 0) remove_beyond(&run);
    if (dyn >= 0) {
        list_units(&run, rank, world);
        quorum_log("score: %d rank(s), %d member(s): %lld pair-scores to do, %lld shard score files already current",
                   world, job->n_members, (long long)run.todo_pairs, (long long)run.skipped_files);
        rc = dyn ? score_dispatch(&run) : score_rounds(&run, rank, world);
        if (rc == QUORUM_EXIT_REQUEUE)
            quorum_log("score: stop signal: shards in flight written; exit %d (requeue; a re-run resumes)",
                       QUORUM_EXIT_REQUEUE);
    }
    for (int m = 0; m < JOB_MAX_MEMBERS; m++)
        if (run.open[m]) member_close(&run.member[m]);
    for (int c = 0; c < job->n_corpora; c++) {
        if (run.loaded[c]) corpus_manifest_free(&run.man[c]);
        free(run.dir[c]);
    }
    free(run.units);
    return rc;
}

int score_job(const Job *job) { return score_job_corpus(job, NULL); }
