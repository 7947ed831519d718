/*
 * cmd_run.c - `quorum run`: the whole pipeline of a job file in one MPI job.
 *
 *   ingest -> score -> vote -> clean -> report (-> dpo when the job has a "dpo" object and the trainer is built)
 *
 * Every stage is collective over MPI_COMM_WORLD. Before a stage runs, rank 0 decides whether its outputs are
 * complete and current (stage_is_current, below) and broadcasts the answer, so a requeued SLURM job resumes
 * where it stopped instead of redoing finished stages. Inside a stage, the stage itself skips finished work
 * (score files per shard, DPO checkpoints).
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
#include "quorum/vote.h"
#include "run_stages.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { STAGE_INGEST = 0, STAGE_SCORE, STAGE_VOTE, STAGE_CLEAN, STAGE_REPORT, STAGE_DPO, STAGE_COUNT } Stage;

static const char *const STAGE_NAMES[STAGE_COUNT] = {"ingest", "score", "vote", "clean", "report", "dpo"};

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
            "MPI job. A stage whose outputs are complete and current is skipped, so a rerun (or a requeued\n"
            "SLURM job) resumes where the last one stopped.\n"
            "\n"
            "  --from STAGE   first stage to consider (default ingest)\n"
            "  --to STAGE     last stage to consider (default dpo)\n"
            "                 STAGE: ingest | score | vote | clean | report | dpo\n"
            "  --corpus NAME  only this corpus of the job (SLURM job arrays run one corpus per task)\n"
            "  --force        run the stages in range even when their outputs are current\n"
            "  --strict       ingest: stop at the first bad input line instead of rejecting it\n"
            "  --status       check the job file and print each stage's state (current / to run); run nothing\n"
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

/* ---------------------------------------------------------------------------------------------------------
 * Is a stage current? Evaluated on rank 0 only; file times are compared with mtime (a stage's outputs are
 * written by temp + rename, so an output that exists is complete).
 * ------------------------------------------------------------------------------------------------------- */

static double max2(double a, double b) { return a > b ? a : b; }

/* mtime in seconds with nanoseconds, or -1 when the file does not exist. */
static double file_mtime(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    return (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
}

/* 1 when `output` exists and is at least as new as `input` (a missing input counts as old). */
static int newer_than(const char *output, double input_mtime) {
    double t = file_mtime(output);
    return t >= 0 && t >= input_mtime;
}

/* Input lines as ingest counts them: newline-terminated, plus a last unterminated one. */
/* Reads corpus c's manifest: 0, or -1 when it is missing or unreadable (the stage is then not current). */
static int manifest_load(const Job *job, const JobCorpus *c, CorpusManifest *m) {
    char *dir = corpus_dir(job->out_dir, c->name);
    char *path = path_join(dir, "manifest.json");
    int rc = file_exists(path) ? corpus_manifest_read(m, dir) : -1;
    free(path);
    free(dir);
    return rc;
}

/* Ingest is current when the manifest exists, its source checksum (FNV-1a of the whole decompressed input)
 * matches the input as it is now, and shard size and line count agree with the job (max_pairs caps lines). */
static int ingest_is_current(const Job *job, const JobCorpus *c) {
    CorpusManifest m;
    if (manifest_load(job, c, &m)) return 0;
    const char *err = NULL;
    uint64_t sum = 0;
    int64_t lines = 0; /* records, JSONL or JSON array, as ingest counts them */
    int current = m.shard_size == job->shard_size && corpus_source_scan(c->path, c->max_pairs, &sum, &lines, &err) == 0 &&
                  m.source_checksum == sum && m.n_lines == lines;
    corpus_manifest_free(&m);
    return current;
}

/* Newest mtime over the score files of corpus c, or -1 when one is missing or stale (its shard_checksum is
 * not the manifest's: the shard changed since it was scored). */
static double scores_newest(const Job *job, const JobCorpus *c) {
    CorpusManifest m;
    double newest = 0;
    if (manifest_load(job, c, &m)) return -1;
    for (int k = 0; k < job->n_members && newest >= 0; k++) {
        for (int64_t s = 0; s < m.n_shards; s++) {
            char *p = score_path(job->out_dir, c->name, job->committee[k].name, s);
            double t = score_file_current(p, m.shard_checksum[s]) ? file_mtime(p) : -1;
            free(p);
            if (t < 0) { newest = -1; break; }
            newest = max2(newest, t);
        }
    }
    corpus_manifest_free(&m);
    return newest;
}

/* 1 when `out` is at least as new as both `in` (which must exist) and the job file: the inputs of
 * vote/clean/report include the job file, since a changed threshold or method must redo them. */
static int output_current(char *in, char *out, double t_in, double t_job) {
    if (in) t_in = file_mtime(in);
    int ok = t_in >= 0 && newer_than(out, max2(t_in, t_job));
    free(in);
    free(out);
    return ok;
}

static int stage_is_current_for(Stage s, const Job *job, const JobCorpus *c) {
    double t_job = file_mtime(job->path);
    switch (s) {
    case STAGE_INGEST: return ingest_is_current(job, c);
    case STAGE_SCORE: return scores_newest(job, c) >= 0;
    case STAGE_VOTE: return output_current(NULL, votes_path(job->out_dir, c->name), scores_newest(job, c), t_job);
    case STAGE_CLEAN:
        return output_current(votes_path(job->out_dir, c->name), run_clean_output(job->out_dir, c->name), 0, t_job);
    case STAGE_REPORT:
        return output_current(run_clean_output(job->out_dir, c->name), run_report_output(job->out_dir), 0, t_job);
    default: return 0; /* dpo resumes from its own checkpoints: always called */
    }
}

/* Collective: rank 0 decides for every corpus whether stage s is current (current[i]); all ranks get the
 * answer. Returns how many corpora are current. */
static int stage_current_corpora(Stage s, const Job *job, int *current) {
    if (quorum_rank() == 0)
        for (int i = 0; i < job->n_corpora; i++) current[i] = stage_is_current_for(s, job, &job->corpora[i]);
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
    return job->dpo.enabled && dpo_job != NULL;
}

int cmd_run(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { run_usage(stdout); return 0; }
    RunOpts o;
    if (run_parse_args(&o, argc, argv)) { run_usage(stderr); return 2; }
    quorum_signals_install();
    Job *job = xcalloc(1, sizeof *job);
    int rc = job_load(job, o.job_path);
    if (rc == 0 && o.corpus) rc = job_select_corpus(job, o.corpus);
    if (rc) { free(job); return 1; }

    int n_stages = o.to - o.from + 1;
    double t_start = now_seconds();
    quorum_log("run: job %s (%d corpora, %d members, %d ranks) -> %s", job->name, job->n_corpora, job->n_members,
               quorum_world(), job->out_dir);
    for (int s = o.from; s <= o.to && rc == 0; s++) {
        const char *name = STAGE_NAMES[s];
        int step = s - o.from + 1;
        if (stop_agreed()) { rc = QUORUM_EXIT_REQUEUE; break; }
        if (!stage_available((Stage)s, job)) {
            quorum_log("run: [%d/%d] %-6s skipped (%s)", step, n_stages, name,
                       job->dpo.enabled ? "trainer not built" : "no \"dpo\" object in the job");
            continue;
        }
        int current[JOB_MAX_CORPORA] = {0};
        if (s != STAGE_DPO && stage_current_corpora((Stage)s, job, current) == job->n_corpora && !o.force) {
            quorum_log("run: [%d/%d] %-6s skipped (outputs complete and current)", step, n_stages, name);
            continue;
        }
        if (o.status) {
            quorum_log("run: [%d/%d] %-6s to run", step, n_stages, name);
            continue;
        }
        quorum_log("run: [%d/%d] %-6s started", step, n_stages, name);
        double t0 = now_seconds();
        rc = outcome_agree(stage_call((Stage)s, job, &o, current));
        if (rc == 0) quorum_log("run: [%d/%d] %-6s done in %.2f s", step, n_stages, name, now_seconds() - t0);
        else if (rc == QUORUM_EXIT_REQUEUE)
            quorum_log("run: [%d/%d] %-6s preempted after %.2f s: exiting 99, rerun to resume", step, n_stages, name,
                       now_seconds() - t0);
        else quorum_log("run: [%d/%d] %-6s FAILED after %.2f s", step, n_stages, name, now_seconds() - t0);
    }
    if (rc == 0 && !o.status) quorum_log("run: %s: all stages done in %.2f s", job->name, now_seconds() - t_start);
    free(job);
    return rc;
}

/* clean writes ledger.json last (include/quorum/clean.h): its time stamp is the corpus's completion record. */
char *run_clean_output(const char *out_dir, const char *corpus) {
    char *dir = clean_dir(out_dir, NULL, corpus);
    char *p = path_join(dir, "ledger.json");
    free(dir);
    return p;
}
/* report writes <out_dir>/report/report.json. */
char *run_report_output(const char *out_dir) {
    char *dir = path_join(out_dir, "report");
    char *p = path_join(dir, "report.json");
    free(dir);
    return p;
}
