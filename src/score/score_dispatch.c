/* score_dispatch.c - the dynamic schedule (quorum/score.h, "Dynamic schedule").
 *
 * Rank 0 runs a dispatcher thread on a duplicate of MPI_COMM_WORLD: it polls MPI_Irecv/MPI_Test for
 * requests (sleeping 1 ms between polls, so it does not take a core from the scoring thread) and answers
 * each with the next unit of the queue (score_sched.c), or -1: no more work, or stop. Every rank, rank 0
 * included (through the same handler, under the lock), loops: ask -> score the unit -> ask again, each
 * request reporting the unit it just finished (seconds, load seconds), errors, its stop flag and the
 * members it holds. Busy seconds per rank are gathered once at the end (score_summary). Why a thread and not MPI_Fetch_and_op counters: Open MPI 4.1 over TCP has no
 * asynchronous progress, so a passive-target RMA on rank 0 could wait for as long as rank 0 scores a
 * shard; the dispatcher thread answers within a millisecond.
 *
 * On an error or a stop signal anywhere, the dispatcher hands out nothing more; units in flight finish
 * and are written; then rank 0 broadcasts one return value. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mpi.h>

#include "quorum/common.h"
#include "quorum/signal.h"
#include "score_internal.h"

enum { TAG_REQ = 1, TAG_REPLY = 2 };
/* A request: the unit just finished (-1 none), error, stop flag, held members, its seconds and load
 * seconds (microseconds). */
enum { Q_UNIT, Q_ERR, Q_STOP, Q_HELD, Q_SEC_US, Q_LOAD_US, Q_LEN };

typedef struct {
    ScoreRun *run;
    MPI_Comm comm;
    pthread_mutex_t mu;
    /* rank 0 only: */
    Sched sched;
    int *member_of;                 /* [n] */
    double *cost;                   /* [n] predicted: shard text bytes x member parameters */
    int *rank_of;                   /* [n] rank the unit was given to, -1 */
    double *seconds, *load_s;       /* [n] measured, -1 until done */
    double *given_s;                /* [n] when it was handed out, seconds after the start */
    int64_t member_total[JOB_MAX_MEMBERS], member_done[JOB_MAX_MEMBERS];
    int64_t done_units, done_pairs;
    double done_cost, total_cost;
    int stop, err, finished;        /* finished: remote ranks answered -1 */
    double t0, last;
} Dispatch;

static void dispatch_init(Dispatch *d, int world) {
    ScoreRun *run = d->run;
    int64_t n = run->n_units;
    d->member_of = xmalloc(sizeof(int) * (size_t)(n + 1));
    d->cost = xmalloc(sizeof(double) * (size_t)(n + 1));
    d->rank_of = xmalloc(sizeof(int) * (size_t)(n + 1));
    d->seconds = xmalloc(sizeof(double) * (size_t)(n + 1));
    d->load_s = xmalloc(sizeof(double) * (size_t)(n + 1));
    d->given_s = xmalloc(sizeof(double) * (size_t)(n + 1));
    double *bytes[JOB_MAX_CORPORA] = {0}; /* per shard, read once whatever the member count */
    for (int64_t u = 0; u < n; u++) {
        const WorkItem *w = &run->units[u];
        if (!bytes[w->corpus]) {
            const CorpusManifest *man = &run->man[w->corpus];
            bytes[w->corpus] = xmalloc(sizeof(double) * (size_t)(man->n_shards + 1));
            for (int64_t k = 0; k < man->n_shards; k++) bytes[w->corpus][k] = -1;
        }
        double *b = &bytes[w->corpus][w->shard];
        if (*b < 0) {
            char *p = shard_path(run->dir[w->corpus], w->shard);
            *b = shard_text_bytes(p, run->man[w->corpus].shard_pairs[w->shard]);
            free(p);
        }
        d->member_of[u] = w->member;
        d->cost[u] = *b * run->member_params[w->member];
        d->rank_of[u] = -1;
        d->seconds[u] = d->load_s[u] = -1;
        d->member_total[w->member]++;
        d->total_cost += d->cost[u];
    }
    for (int c = 0; c < JOB_MAX_CORPORA; c++) free(bytes[c]);
    sched_init(&d->sched, d->member_of, d->cost, n, run->job->n_members, world);
}

static void dispatch_free(Dispatch *d) {
    sched_free(&d->sched);
    free(d->member_of);
    free(d->cost);
    free(d->rank_of);
    free(d->seconds);
    free(d->load_s);
    free(d->given_s);
}

/* The progress line with units and per-member status: "name done/total [ranks holding it]". */
static void dispatch_progress(Dispatch *d, int final) {
    ScoreRun *run = d->run;
    const char *env = getenv("QUORUM_PROGRESS_SECS");
    double every = env ? atof(env) : 10.0;
    if (!final && now_seconds() - d->last < every) return; /* called every poll: cheap until it is time */
    Buf b = {0};
    buf_appendf(&b, "units %lld/%lld", (long long)d->done_units, (long long)run->n_units);
    for (int m = 0; m < run->job->n_members; m++) {
        if (!d->member_total[m]) continue;
        buf_appendf(&b, "%s %s %lld/%lld [", m ? "," : ";", run->job->committee[m].name,
                    (long long)d->member_done[m], (long long)d->member_total[m]);
        int sep = 0;
        for (int r = 0; r < d->sched.world; r++)
            if (d->sched.held[r] >> m & 1u) buf_appendf(&b, "%sr%d", sep++ ? " " : "", r);
        buf_appendf(&b, "]");
    }
    double el = now_seconds() - d->t0;
    double eta = d->done_cost > 0 ? (d->total_cost - d->done_cost) * el / d->done_cost : -1;
    score_progress(d->done_pairs, run->todo_pairs, d->t0, &d->last, every, final, eta, b.data);
    buf_free(&b);
}

/* One request from `rank` (under the lock): records what it finished, returns its next unit or -1. */
static int64_t dispatch_handle(Dispatch *d, int rank, const int64_t *q) {
    int64_t u = q[Q_UNIT];
    if (u >= 0 && u < d->run->n_units && d->seconds[u] < 0) {
        d->seconds[u] = (double)q[Q_SEC_US] / 1e6;
        d->load_s[u] = (double)q[Q_LOAD_US] / 1e6;
        const WorkItem *w = &d->run->units[u];
        d->done_units++;
        d->done_pairs += d->run->man[w->corpus].shard_pairs[w->shard];
        d->done_cost += d->cost[u];
        d->member_done[w->member]++;
    }
    d->err |= q[Q_ERR] != 0;
    d->stop |= q[Q_STOP] != 0 || quorum_stop_requested();
    int64_t next = d->err || d->stop ? -1 : sched_next(&d->sched, rank, (uint32_t)q[Q_HELD]);
    if (next >= 0) {
        d->rank_of[next] = rank;
        d->given_s[next] = now_seconds() - d->t0;
    }
    dispatch_progress(d, 0);
    return next;
}

static void *dispatcher_main(void *arg) {
    Dispatch *d = arg;
    int remote = d->sched.world - 1;
    int64_t q[Q_LEN];
    MPI_Request rq;
    mpiCheck(MPI_Irecv(q, Q_LEN, MPI_INT64_T, MPI_ANY_SOURCE, TAG_REQ, d->comm, &rq));
    while (d->finished < remote) {
        int flag = 0;
        MPI_Status st;
        mpiCheck(MPI_Test(&rq, &flag, &st));
        if (!flag) {
            pthread_mutex_lock(&d->mu);
            d->stop |= quorum_stop_requested();
            dispatch_progress(d, 0);
            pthread_mutex_unlock(&d->mu);
            nanosleep(&(struct timespec){0, 1000000}, NULL);
            continue;
        }
        pthread_mutex_lock(&d->mu);
        int64_t next = dispatch_handle(d, st.MPI_SOURCE, q);
        pthread_mutex_unlock(&d->mu);
        mpiCheck(MPI_Send(&next, 1, MPI_INT64_T, st.MPI_SOURCE, TAG_REPLY, d->comm));
        if (next < 0) d->finished++;
        if (d->finished < remote) mpiCheck(MPI_Irecv(q, Q_LEN, MPI_INT64_T, MPI_ANY_SOURCE, TAG_REQ, d->comm, &rq));
    }
    return NULL;
}

static int64_t ask(Dispatch *d, int rank, const int64_t *q) {
    int64_t next;
    if (rank == 0) {
        pthread_mutex_lock(&d->mu);
        next = dispatch_handle(d, 0, q);
        pthread_mutex_unlock(&d->mu);
        return next;
    }
    mpiCheck(MPI_Send(q, Q_LEN, MPI_INT64_T, 0, TAG_REQ, d->comm));
    mpiCheck(MPI_Recv(&next, 1, MPI_INT64_T, 0, TAG_REPLY, d->comm, MPI_STATUS_IGNORE));
    return next;
}

/* Every rank: ask, score, report, until the answer is -1. */
static void work_loop(Dispatch *d, int rank, int world) {
    ScoreRun *run = d->run;
    int64_t q[Q_LEN] = {-1, 0, 0, 0, 0, 0};
    for (;;) {
        q[Q_STOP] = quorum_stop_requested();
        q[Q_HELD] = score_open_mask(run);
        int64_t u = ask(d, rank, q);
        if (u < 0) return;
        double t = now_seconds(), load_s = 0;
        int err = score_unit(run, &run->units[u], &load_s) != 0;
        q[Q_UNIT] = err ? -1 : u;
        q[Q_ERR] |= err;
        q[Q_SEC_US] = (int64_t)((now_seconds() - t) * 1e6);
        q[Q_LOAD_US] = (int64_t)(load_s * 1e6);
        if (!err) score_test_hooks(run, &run->units[u], rank, world);
    }
}

/* <out_dir>/scores/schedule.jsonl (schedule.<corpus>.jsonl for a --corpus run): one line per unit scored
 * by this run, predicted vs measured. Written atomically by rank 0. */
static void write_schedule_log(const Dispatch *d) {
    const ScoreRun *run = d->run;
    const Job *job = run->job;
    double sec = 0, cost = 0;
    for (int64_t u = 0; u < run->n_units; u++)
        if (d->seconds[u] >= 0) { sec += d->seconds[u] - d->load_s[u]; cost += d->cost[u]; }
    double per_cost = cost > 0 ? sec / cost : 0; /* seconds per cost unit, fitted over this run */
    Buf b = {0};
    for (int64_t u = 0; u < run->n_units; u++) {
        if (d->seconds[u] < 0) continue;
        const WorkItem *w = &run->units[u];
        buf_appendf(&b, "{\"corpus\":\"%s\",\"member\":\"%s\",\"shard\":%lld,\"pairs\":%lld,\"rank\":%d,"
                    "\"cost\":%.6g,\"predicted_s\":%.6f,\"seconds\":%.6f,\"load_s\":%.6f,\"given_s\":%.6f}\n",
                    job->corpora[w->corpus].name, job->committee[w->member].name, (long long)w->shard,
                    (long long)run->man[w->corpus].shard_pairs[w->shard], d->rank_of[u], d->cost[u],
                    d->cost[u] * per_cost, d->seconds[u], d->load_s[u], d->given_s[u]);
    }
    char name[300];
    snprintf(name, sizeof name, "scores/schedule%s%s.jsonl", run->only_corpus ? "." : "",
             run->only_corpus ? run->only_corpus : "");
    char *path = path_join(job->out_dir, name);
    if (file_write_atomic(path, b.data ? b.data : "", b.len) != 0) quorum_warn("%s: cannot write the schedule log", path);
    free(path);
    buf_free(&b);
}

/* 0, -1 or QUORUM_EXIT_REQUEUE, decided by rank 0 from what the dispatcher saw. */
static int dispatch_result(const Dispatch *d) {
    if (d->err) return -1;
    if (d->done_units == d->run->n_units) return 0;
    return d->stop ? QUORUM_EXIT_REQUEUE : -1;
}

int score_dispatch(ScoreRun *run) {
    int rank = quorum_rank(), world = quorum_world();
    /* The template check, split in contiguous member-major chunks (each rank opens few templates). */
    int64_t lo = run->n_units * rank / world, hi = run->n_units * (rank + 1) / world;
    int err = score_check_units(run, run->units + lo, hi - lo) != 0;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &err, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (err) return -1;
    Dispatch d;
    memset(&d, 0, sizeof d);
    d.run = run;
    pthread_mutex_init(&d.mu, NULL);
    mpiCheck(MPI_Comm_dup(MPI_COMM_WORLD, &d.comm));
    if (rank == 0) dispatch_init(&d, world);
    d.t0 = d.last = now_seconds();
    pthread_t th;
    int threaded = rank == 0 && world > 1;
    if (threaded) qCheck(pthread_create(&th, NULL, dispatcher_main, &d) == 0, NULL, "cannot start the dispatcher thread");
    work_loop(&d, rank, world);
    if (threaded) pthread_join(th, NULL);
    double wall = now_seconds() - d.t0;
    int rc = 0;
    if (rank == 0) {
        dispatch_progress(&d, 1);
        write_schedule_log(&d);
        rc = dispatch_result(&d);
        dispatch_free(&d);
    }
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    score_summary(run, "dynamic", wall);
    MPI_Comm_free(&d.comm);
    pthread_mutex_destroy(&d.mu);
    return rc;
}
