/*
 * cmd_run.c - `quorum run`: the whole pipeline of a job file in one MPI job.
 *
 *   ingest -> score -> vote -> clean -> report (-> dpo when the job has a "dpo" object and the trainer is built)
 *
 * Every stage is collective over MPI_COMM_WORLD. Before a stage runs, rank 0 decides whether it is current
 * for each corpus (stage records: run_fresh.c) and broadcasts the answer, so a requeued SLURM job resumes
 * where it stopped instead of redoing finished stages; after it ran, rank 0 writes its records. Inside a
 * stage, the stage itself skips finished work (score files per shard, DPO checkpoints of the same
 * fingerprint). Rank 0 holds a lock on out_dir for the whole run (run_guard.c).
 *
 * Preemption: SLURM sends SIGUSR1 ahead of the time limit; the stages poll quorum_stop_requested() and return
 * QUORUM_EXIT_REQUEUE (99). The driver also polls between stages. 99 becomes the process exit code, which the
 * sbatch scripts (slurm/) turn into `scontrol requeue`.
 */
#include "quorum/cli.h"
#include "quorum/common.h"
#include "quorum/corpus.h"
#include "quorum/job.h"
#include "quorum/score.h"
#include "quorum/train.h"
#include "quorum/vote.h"
#include "run_stages.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *job_path;
    Stage from, to;
    const char *corpus; /* NULL = every corpus of the job */
    int force;          /* run stages even when their outputs are current */
    int strict;         /* ingest: stop at the first bad line instead of counting it */
    int status;         /* only print what would run */
} RunOpts;

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: quorum run JOB.json [--from STAGE] [--to STAGE] [--corpus NAME] [--force] [--strict] [--status]\n"
            "\n"
            "Runs ingest -> score -> vote -> clean -> report (-> dpo when the job has a \"dpo\" object) in one\n"
            "MPI job. A stage is skipped when the fingerprint of its inputs equals the one recorded when it last\n"
            "ran (<out_dir>/records/), so a rerun (or a requeued SLURM job) resumes where the last one stopped.\n"
            "\n"
            "  --from STAGE   first stage to consider (default ingest)\n"
            "  --to STAGE     last stage to consider (default dpo)\n"
            "                 STAGE: ingest | score | vote | clean | report | dpo\n"
            "  --corpus NAME  only this corpus of the job (SLURM job arrays run one corpus per task)\n"
            "  --force        run the stages in range even when their outputs are current (score: every file;\n"
            "                 dpo: the old run is set aside and training starts fresh)\n"
            "  --strict       ingest: stop at the first bad input line instead of rejecting it\n"
            "  --status       check the job file and its inputs, print each stage's state per corpus (current /\n"
            "                 to run, and why); run nothing. Exit 1 when an input is missing\n"
            "\n"
            "Exit codes: 0 done, 1 a stage failed, 2 usage, 99 preempted (SIGUSR1): rerun to resume.\n");
}

static int stage_parse(const char *s, Stage *out) {
    for (int i = 0; i < STAGE_COUNT; i++)
        if (!strcmp(s, STAGE_NAMES[i])) { *out = (Stage)i; return 0; }
    return -1;
}

static int run_parse_args(RunOpts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->from = STAGE_INGEST;
    o->to = STAGE_DPO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if ((!strcmp(a, "--from") || !strcmp(a, "--to")) && has_value) {
            Stage *dst = a[2] == 'f' ? &o->from : &o->to;
            if (stage_parse(argv[++i], dst)) {
                fprintf(stderr, "quorum: error: run: %s \"%s\": unknown stage\n", a, argv[i]);
                return -1;
            }
        } else if (!strcmp(a, "--corpus") && has_value) {
            o->corpus = argv[++i];
        } else if (!strcmp(a, "--force")) {
            o->force = 1;
        } else if (!strcmp(a, "--strict")) {
            o->strict = 1;
        } else if (!strcmp(a, "--status")) {
            o->status = 1;
        } else if (a[0] != '-' && !o->job_path) {
            o->job_path = a;
        } else {
            fprintf(stderr, "quorum: error: run: unexpected argument \"%s\"\n", a);
            return -1;
        }
    }
    if (!o->job_path) {
        fprintf(stderr, "quorum: error: run: no job file given\n");
        return -1;
    }
    if (o->from > o->to) {
        fprintf(stderr, "quorum: error: run: --from %s comes after --to %s\n", STAGE_NAMES[o->from],
                STAGE_NAMES[o->to]);
        return -1;
    }
    return 0;
}

/* Keeps only corpus `name` in the job: every stage then works on that corpus alone. */
static int job_select_corpus(Job *job, const char *name) {
    for (int i = 0; i < job->n_corpora; i++) {
        if (strcmp(job->corpora[i].name, name)) continue;
        job->corpora[0] = job->corpora[i];
        job->n_corpora = 1;
        return 0;
    }
    return quorum_input_error(job->path, "--corpus \"%s\": no corpus of that name in the job", name);
}

/* Collective: rank 0 decides for every corpus whether stage s is current (current[i], why on rank 0);
 * all ranks get current[]. Job-wide stages (report, dpo) decide once for all corpora. Returns how many
 * corpora are current. */
static int stage_current_corpora(Stage s, const Job *job, const uint64_t *member_fp, int *current,
                                 char (*why)[512]) {
    if (quorum_rank() == 0)
        for (int i = 0; i < job->n_corpora; i++)
            current[i] = (s >= STAGE_REPORT && i > 0) ? current[0]
                                                      : stage_current(s, job, &job->corpora[i], member_fp, why[i], 512);
    mpiCheck(MPI_Bcast(current, job->n_corpora, MPI_INT, 0, MPI_COMM_WORLD));
    int n = 0;
    for (int i = 0; i < job->n_corpora; i++) n += current[i];
    return n;
}

/* ---------------------------------------------------------------------------------------------------------
 * Running a stage.
 * ------------------------------------------------------------------------------------------------------- */

/* Ingest works corpus by corpus, so only the corpora whose manifests are stale are read again. */
static int ingest_stale(Job *job, const RunOpts *o, const int *current) {
    for (int i = 0; i < job->n_corpora; i++) {
        if (!o->force && current[i]) continue;
        int rc = corpus_ingest(job, &job->corpora[i], o->strict);
        if (rc) return rc;
    }
    return 0;
}

static int stage_call(Stage s, Job *job, const RunOpts *o, const int *current) {
    switch (s) {
    case STAGE_INGEST: return ingest_stale(job, o, current);
    case STAGE_SCORE: return score_job(job);
    case STAGE_VOTE: return vote_job(job);
    case STAGE_CLEAN: return clean_job(job);
    case STAGE_REPORT: return report_job(job);
    case STAGE_DPO: return dpo_job(job);
    default: return -1;
    }
}

/* Ranks agree on a stage's outcome: preempted (99) wins over failed (1) wins over done (0). */
static int outcome_agree(int rc) {
    int mine = rc == QUORUM_EXIT_REQUEUE || (rc != 0 && quorum_stop_requested()) ? 2 : rc != 0 ? 1 : 0;
    int all = 0;
    mpiCheck(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return all == 2 ? QUORUM_EXIT_REQUEUE : all;
}

/* Collective: has any rank been asked to stop (SIGUSR1)? */
static int stop_agreed(void) {
    int mine = quorum_stop_requested() != 0, any = 0;
    mpiCheck(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return any;
}

static int stage_available(Stage s, const Job *job) {
    if (s != STAGE_DPO) return 1;
    return job->dpo.enabled;
}

/* Rank 0: before stage s runs (force: its score files go; dpo: an unrelated run is moved aside). Collective. */
static int stage_prepare(Stage s, const Job *job, const RunOpts *o, const uint64_t *member_fp) {
    int rc = 0;
    if (quorum_rank() == 0) {
        if (s == STAGE_SCORE && o->force) rc = run_force_scores(job);
        if (s == STAGE_DPO) rc = run_dpo_prepare(job, member_fp, o->force);
    }
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return rc;
}

/* Rank 0: after stage s finished, its record per corpus (job-wide stages: one). Collective. */
static int stage_records(Stage s, const Job *job, const uint64_t *member_fp) {
    int rc = 0;
    if (quorum_rank() == 0)
        for (int i = 0; i < job->n_corpora && rc == 0; i++) {
            if (s >= STAGE_REPORT && i > 0) break;
            rc = stage_record(s, job, &job->corpora[i], member_fp);
        }
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return rc;
}

/* --status: one line per corpus (job-wide stages: one line): current, or to run and why. A corpus whose
 * earlier stage is to run is to run in every later stage. */
static void status_print(Stage s, int step, int n_stages, const Job *job, const int *current, char (*why)[512],
                         int *pending) {
    for (int i = 0; i < job->n_corpora; i++) {
        int wide = s >= STAGE_REPORT;
        if (wide && i > 0) break;
        const char *who = wide ? "(job)" : job->corpora[i].name;
        int after = -1;
        for (int k = 0; k < job->n_corpora; k++)
            if ((wide || k == i) && pending[k] >= 0 && (after < 0 || pending[k] < after)) after = pending[k];
        if (after >= 0) quorum_log("run: [%d/%d] %-6s %s: to run (after %s)", step, n_stages, STAGE_NAMES[s], who, STAGE_NAMES[after]);
        else if (current[i]) quorum_log("run: [%d/%d] %-6s %s: current", step, n_stages, STAGE_NAMES[s], who);
        else quorum_log("run: [%d/%d] %-6s %s: to run (%s)", step, n_stages, STAGE_NAMES[s], who, why[i]);
        if (!current[i] && after < 0) {
            if (wide) for (int k = 0; k < job->n_corpora; k++) pending[k] = s;
            else pending[i] = s;
        }
    }
}

/* --status: every corpus source and the dpo policy exist (members: member_fingerprints). Rank 0 prints one
 * line per missing input. Collective; 1 when all are there. */
static int status_inputs(const Job *job) {
    int ok = 1;
    if (quorum_rank() == 0) {
        struct stat st;
        for (int i = 0; i < job->n_corpora; i++) {
            if (stat(job->corpora[i].path, &st) == 0 && S_ISREG(st.st_mode)) continue;
            quorum_input_error(job->corpora[i].path, "corpus \"%s\": the source is missing or not a regular file",
                               job->corpora[i].name);
            ok = 0;
        }
        char *cfg = job->dpo.enabled ? path_join(job->dpo.policy, "config.json") : NULL;
        if (cfg && !file_exists(cfg)) {
            quorum_input_error(cfg, "dpo.policy: missing");
            ok = 0;
        }
        free(cfg);
    }
    mpiCheck(MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return ok;
}

/* Runs stages o->from..o->to. 0, 1, or QUORUM_EXIT_REQUEUE. */
static int run_stages(Job *job, const RunOpts *o, const uint64_t *member_fp) {
    int n_stages = o->to - o->from + 1, rc = 0;
    int pending[JOB_MAX_CORPORA];
    char(*why)[512] = xcalloc(JOB_MAX_CORPORA, 512);
    for (int i = 0; i < JOB_MAX_CORPORA; i++) pending[i] = -1;
    for (int s = o->from; s <= o->to && rc == 0; s++) {
        const char *name = STAGE_NAMES[s];
        int step = s - o->from + 1;
        if (stop_agreed()) { rc = QUORUM_EXIT_REQUEUE; break; }
        if (!stage_available((Stage)s, job)) {
            quorum_log("run: [%d/%d] %-6s skipped (%s)", step, n_stages, name,
                       job->dpo.enabled ? "trainer not built" : "no \"dpo\" object in the job");
            continue;
        }
        int current[JOB_MAX_CORPORA] = {0};
        int n_current = stage_current_corpora((Stage)s, job, member_fp, current, why);
        if (o->status) {
            status_print((Stage)s, step, n_stages, job, current, why, pending);
            continue;
        }
        if (n_current == job->n_corpora && !o->force) {
            quorum_log("run: [%d/%d] %-6s skipped (outputs complete and current)", step, n_stages, name);
            continue;
        }
        quorum_log("run: [%d/%d] %-6s started", step, n_stages, name);
        double t0 = now_seconds();
        rc = stage_prepare((Stage)s, job, o, member_fp);
        if (rc == 0) rc = outcome_agree(stage_call((Stage)s, job, o, current));
        if (rc == 0) rc = stage_records((Stage)s, job, member_fp) ? 1 : 0;
        if (rc == 0) quorum_log("run: [%d/%d] %-6s done in %.2f s", step, n_stages, name, now_seconds() - t0);
        else if (rc == QUORUM_EXIT_REQUEUE)
            quorum_log("run: [%d/%d] %-6s preempted after %.2f s: exiting 99, rerun to resume", step, n_stages, name,
                       now_seconds() - t0);
        else quorum_log("run: [%d/%d] %-6s FAILED after %.2f s", step, n_stages, name, now_seconds() - t0);
    }
    free(why);
    return rc;
}

/* Collective: the job (job_load: collective), --corpus and "at least one corpus"; the same outcome on every
 * rank, printed once (rank 0). 0 or -1. */
static int job_load_once(Job *job, const RunOpts *o) {
    int rc = job_load(job, o->job_path);
    quorum_mute_errors(quorum_rank() != 0);
    if (rc == 0 && o->corpus) rc = job_select_corpus(job, o->corpus);
    if (rc == 0 && job->n_corpora == 0) rc = quorum_input_error(job->path, "key \"corpora\": the job has no corpus");
    quorum_mute_errors(0);
    return rc;
}

/* Collective: rank 0 takes the out_dir lock (of one corpus with --corpus). 0 or 1. */
static int lock_agree(const Job *job, const char *corpus, int fd[2]) {
    int rc = quorum_rank() == 0 ? (run_lock(job, corpus, fd) ? 1 : 0) : 0;
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return rc;
}

int cmd_run(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { run_usage(stdout); return 0; }
    RunOpts o;
    if (run_parse_args(&o, argc, argv)) { run_usage(stderr); return 2; }
    quorum_signals_install();
    Job *job = xcalloc(1, sizeof *job);
    int rc = job_load_once(job, &o);
    if (rc) { free(job); return 1; }

    int lock_fd[2] = {-1, -1};
    uint64_t member_fp[JOB_MAX_MEMBERS] = {0};
    double t_start = now_seconds();
    if (!o.status) rc = lock_agree(job, o.corpus, lock_fd);
    /* --status plans the stages even when a member is missing (it says so above, and exits 1) */
    int inputs_ok = rc == 0 && (o.to < STAGE_SCORE || member_fingerprints(job, member_fp) == 0);
    if (rc == 0 && o.status) inputs_ok = status_inputs(job) && inputs_ok;
    if (!inputs_ok && !o.status) rc = 1;
    if (rc == 0) {
        quorum_log("run: job %s (%d corpora, %d members, %d ranks) -> %s", job->name, job->n_corpora, job->n_members,
                   quorum_world(), job->out_dir);
        rc = run_stages(job, &o, member_fp);
        if (rc == 0 && o.status && !inputs_ok) rc = 1;
    }
    if (rc == 0 && !o.status) quorum_log("run: %s: all stages done in %.2f s", job->name, now_seconds() - t_start);
    run_unlock(lock_fd);
    free(job);
    return rc;
}
