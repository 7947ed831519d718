/* score_unit.c - one work unit of the score stage (quorum/score.h): the member cache under the memory
 * budget, the template check, scoring a shard and writing its score file, and the test hooks. Used by
 * both schedules (score_job.c static, score_dispatch.c dynamic); no MPI here. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quorum/common.h"
#include "quorum/score.h"
#include "score_internal.h"

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

/* Each member of units[0..n) (grouped by member) opens its template only (no weights) and renders every
 * pair of those units' shards (Member.check), so a dialogue a template refuses stops the job at its
 * start. 0 or -1 after one line. */
int score_check_units(ScoreRun *run, const WorkItem *units, int64_t n) {
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0;) {
        int m = units[i].member;
        Member mem;
        rc = member_open_check(&mem, &run->job->committee[m]);
        for (; i < n && units[i].member == m && rc == 0 && mem.check; i++) {
            Shard s;
            if ((rc = read_checked_shard(run, &units[i], &s)) != 0) break;
            Pair *pairs = xmalloc(sizeof(Pair) * (size_t)(s.n + 1));
            for (int64_t j = 0; j < s.n; j++) shard_get_pair(&s, j, &pairs[j]);
            mem.corpus = run->job->corpora[units[i].corpus].name;
            rc = mem.check(&mem, pairs, s.n);
            free(pairs);
            shard_free(&s);
        }
        while (i < n && units[i].member == m) i++;
        member_close(&mem);
    }
    return rc;
}

/* score.h "Memory budget": a member's weights as loaded for scoring (member_bytes) */
static double member_gb(const ScoreRun *run, int m) { return run->member_bytes[m] / 1e9; }

uint32_t score_open_mask(const ScoreRun *run) {
    uint32_t mask = 0;
    for (int m = 0; m < run->job->n_members; m++) mask |= (uint32_t)run->open[m] << m;
    return mask;
}

int score_member_acquire(ScoreRun *run, int m, double *load_s) {
    *load_s = 0;
    run->last_use[m] = ++run->tick;
    if (run->open[m]) return 0;
    double need = member_gb(run, m), used = 0;
    for (int i = 0; i < run->job->n_members; i++) used += run->open[i] ? member_gb(run, i) : 0;
    while (score_open_mask(run)) {
        if (run->budget_gb > 0 && used + need <= run->budget_gb) break;
        int lru = -1;
        for (int i = 0; i < run->job->n_members; i++)
            if (run->open[i] && (lru < 0 || run->last_use[i] < run->last_use[lru])) lru = i;
        used -= member_gb(run, lru);
        member_close(&run->member[lru]);
        run->open[lru] = 0;
    }
    if (run->budget_gb > 0 && need > run->budget_gb)
        quorum_warn("member \"%s\": ~%.1f GB of fp32 weights exceed QUORUM_RANK_MEM_GB=%g: loaded alone",
                    run->job->committee[m].name, need, run->budget_gb);
    double t = now_seconds();
    if (member_open(&run->member[m], &run->job->committee[m]) != 0) return -1;
    run->open[m] = 1;
    *load_s = now_seconds() - t;
    return 0;
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

/* QUORUM_TEST_SLOW_MEMBER_US=name:us[,name:us...]: microseconds per pair this member sleeps after
 * scoring (a member of known, unequal cost for the scheduler benchmark). */
static void test_slow_member(const char *name, int64_t pairs) {
    const char *spec = getenv("QUORUM_TEST_SLOW_MEMBER_US");
    size_t len = strlen(name);
    for (const char *p = spec; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, name, len) && p[len] == ':') usleep((useconds_t)(atof(p + len + 1) * (double)pairs));
}

int score_unit(ScoreRun *run, const WorkItem *w, double *load_s) {
    const Job *job = run->job;
    double t0 = now_seconds();
    if (score_member_acquire(run, w->member, load_s) != 0) return -1;
    Member *mem = &run->member[w->member];
    Shard s;
    if (read_checked_shard(run, w, &s) != 0) return -1;
    Pair *pairs = xmalloc(sizeof(Pair) * (size_t)(s.n + 1));
    float *chosen = xmalloc(sizeof(float) * (size_t)(s.n + 1)), *rejected = xmalloc(sizeof(float) * (size_t)(s.n + 1));
    for (int64_t i = 0; i < s.n; i++) shard_get_pair(&s, i, &pairs[i]);
    mem->corpus = job->corpora[w->corpus].name;
    int rc = mem->score(mem, pairs, s.n, chosen, rejected);
    if (rc == 0) rc = check_finite(run, w, &s, chosen, rejected);
    if (rc == 0) test_slow_member(job->committee[w->member].name, s.n);
    if (rc == 0) {
        char *p = score_path(job->out_dir, job->corpora[w->corpus].name, job->committee[w->member].name, w->shard);
        rc = score_file_write(p, job->committee[w->member].name, run->member_fp[w->member],
                              run->man[w->corpus].shard_checksum[w->shard], s.n, s.pair_id, chosen, rejected);
        free(p);
    }
    free(pairs);
    free(chosen);
    free(rejected);
    shard_free(&s);
    run->busy_s += now_seconds() - t0;
    if (rc == 0) run->files_written++;
    return rc;
}

/* QUORUM_TEST_UNIT_LOG: one line "corpus member shard rank" appended per score file written (O_APPEND:
 * lines of concurrent ranks never interleave), so a test counts how often each unit was scored. */
static void test_unit_log(const ScoreRun *run, const WorkItem *w, int rank) {
    const char *path = getenv("QUORUM_TEST_UNIT_LOG");
    if (!path) return;
    char line[700];
    int n = snprintf(line, sizeof line, "%s %s %lld %d\n", run->job->corpora[w->corpus].name,
                     run->job->committee[w->member].name, (long long)w->shard, rank);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0 && write(fd, line, (size_t)n) != n) quorum_warn("%s: cannot append the unit log", path);
    if (fd >= 0) close(fd);
}

void score_test_hooks(ScoreRun *run, const WorkItem *w, int rank, int world) {
    test_unit_log(run, w, rank);
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
