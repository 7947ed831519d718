/*
 * run_guard.c - what keeps `quorum run` honest around its stages:
 *  - one run per out_dir: rank 0 holds flock(<out_dir>/.quorum.lock) for the whole run; a second run
 *    stops with one line naming the holder (pid, host, start time, job file). A run of one corpus
 *    (--corpus, as SLURM array tasks) holds it shared plus <out_dir>/.quorum.lock.<corpus> exclusively,
 *    so runs of different corpora proceed side by side, and never beside a whole-job run;
 *  - --force really redoes: the score files of the selected corpora are removed before the score stage;
 *  - dpo never resumes a checkpoint trained from other inputs: a <out_dir>/dpo whose record does not
 *    match (or --force) is moved aside to <out_dir>/dpo.stale-N and training starts fresh.
 */
#include "quorum/common.h"
#include "quorum/score.h"
#include "run_stages.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* flock(path, op | LOCK_NB), then the holder line written into the file. The fd, or -1 after one line
 * naming the holder found in the file. */
static int lock_file(const Job *job, const char *path, int op, const char *what) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return quorum_input_error(path, "cannot open the lock file: %s", strerror(errno));
    if (flock(fd, op | LOCK_NB) != 0) {
        char holder[512] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = 0;
        char *nl = strchr(holder, '\n');
        if (nl) *nl = 0;
        quorum_input_error(path, "another quorum run is using this %s (%s): wait for it to end", what,
                           holder[0] ? holder : "holder unknown");
        close(fd);
        return -1;
    }
    char host[256] = "?", line[2048], when[64];
    gethostname(host, sizeof host - 1);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int len = snprintf(line, sizeof line, "pid %d on %s since %s, job %s\n", (int)getpid(), host, when, job->path);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len) { /* the lock holds anyway */ }
    return fd;
}

int run_lock(const Job *job, const char *corpus, int fd_out[2]) {
    fd_out[0] = fd_out[1] = -1;
    if (mkdir_p(job->out_dir)) return quorum_input_error(job->out_dir, "cannot create the output folder");
    char *path = path_join(job->out_dir, ".quorum.lock");
    fd_out[0] = lock_file(job, path, corpus ? LOCK_SH : LOCK_EX, "output folder");
    free(path);
    if (fd_out[0] < 0 || !corpus) return fd_out[0] < 0 ? -1 : 0;
    Buf b = {0};
    buf_appendf(&b, "%s/.quorum.lock.%s", job->out_dir, corpus);
    fd_out[1] = lock_file(job, b.data, LOCK_EX, "corpus");
    buf_free(&b);
    if (fd_out[1] >= 0) return 0;
    run_unlock(fd_out);
    return -1;
}

void run_unlock(int fd[2]) {
    for (int i = 0; i < 2; i++)
        if (fd[i] >= 0) close(fd[i]); /* closing releases the lock */
    fd[0] = fd[1] = -1;
}

int run_force_scores(const Job *job) {
    for (int i = 0; i < job->n_corpora; i++) {
        char pattern[JOB_STR + 600];
        snprintf(pattern, sizeof pattern, "%s/scores/%s/*/shard-*.h5", job->out_dir, job->corpora[i].name);
        glob_t g;
        if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0)
            for (size_t k = 0; k < g.gl_pathc; k++)
                if (unlink(g.gl_pathv[k]) != 0) {
                    quorum_input_error(g.gl_pathv[k], "--force: cannot remove the score file: %s", strerror(errno));
                    globfree(&g);
                    return -1;
                }
        globfree(&g);
    }
    return 0;
}

int run_dpo_prepare(const Job *job, const uint64_t *member_fp, int force) {
    Fingerprint *f = xmalloc(sizeof *f);
    char why[512] = "";
    int same = 0, rc = stage_fingerprint(STAGE_DPO, job, NULL, member_fp, f, why, sizeof why);
    if (rc) quorum_input_error(job->path, "dpo: cannot fingerprint its inputs: %s", why);
    if (rc == 0) record_check(job->out_dir, STAGE_NAMES[STAGE_DPO], NULL, f, &same, why, sizeof why);
    char *dir = path_join(job->out_dir, "dpo");
    if (rc == 0 && file_exists(dir) && (force || !same)) {
        char aside[JOB_STR + 64];
        for (int n = 1;; n++) {
            snprintf(aside, sizeof aside, "%s.stale-%d", dir, n);
            if (!file_exists(aside)) break;
        }
        if (rename(dir, aside) != 0) rc = quorum_input_error(dir, "cannot move the old run aside: %s", strerror(errno));
        else quorum_log("run: dpo: %s holds a run of other inputs (%s): moved to %s, training starts fresh", dir,
                        force ? "--force" : why, aside);
    }
    /* Recorded before training (no final model yet), so a preempted run resumes only its own checkpoint. */
    char *out = stage_output(STAGE_DPO, job, NULL);
    if (rc == 0) rc = record_write(job->out_dir, STAGE_NAMES[STAGE_DPO], NULL, f, out);
    free(out);
    free(dir);
    free(f);
    return rc;
}
