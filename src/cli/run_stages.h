/*
 * run_stages.h - what the pipeline driver (cmd_run.c) needs from the stages, in one place.
 *
 * The stage entry points live in the stage headers (dpo_job: quorum/train.h); DPO is the one optional
 * stage: it runs when the job has a "dpo" object.
 */
#ifndef QUORUM_RUN_STAGES_H
#define QUORUM_RUN_STAGES_H

#include "quorum/job.h"

#include "quorum/clean.h"
#include "quorum/record.h"
#include "quorum/signal.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { STAGE_INGEST = 0, STAGE_SCORE, STAGE_VOTE, STAGE_CLEAN, STAGE_REPORT, STAGE_DPO, STAGE_COUNT } Stage;
extern const char *const STAGE_NAMES[STAGE_COUNT];

/* Freshness by stage records (run_fresh.c; rank 0 only, reads files). member_fp: member_fingerprints().
 * c is ignored by the job-wide stages (report, dpo). */
/* The fingerprint stage s would record now. 0, or -1 with `why` when an input cannot be read. */
int stage_fingerprint(Stage s, const Job *job, const JobCorpus *c, const uint64_t *member_fp, Fingerprint *f,
                      char *why, size_t cap);
/* 1 when stage s is current for corpus c; else 0 and `why` names what changed. */
int stage_current(Stage s, const Job *job, const JobCorpus *c, const uint64_t *member_fp, char *why, size_t cap);
/* Writes the record of stage s for corpus c after it finished (score: nothing, its files carry it). 0 or -1. */
int stage_record(Stage s, const Job *job, const JobCorpus *c, const uint64_t *member_fp);
/* Stage s's completion file relative to out_dir (NULL for score). Caller frees. */
char *stage_output(Stage s, const Job *job, const JobCorpus *c);

/* run_guard.c (rank 0 only). flock on <out_dir>/.quorum.lock (shared with --corpus, then also
 * .quorum.lock.<corpus> exclusive): 0 and fd[2], or -1 after one line naming the holder. */
int run_lock(const Job *job, const char *corpus, int fd[2]);
void run_unlock(int fd[2]);
/* --force on score: removes the score files of the job's corpora. 0 or -1. */
int run_force_scores(const Job *job);
/* Before dpo: moves a <out_dir>/dpo trained from other inputs (or any, with force) aside and records the
 * fingerprint of this run. 0 or -1. */
int run_dpo_prepare(const Job *job, const uint64_t *member_fp, int force);

#endif
