/*
 * score_internal.h - what the score stage's files share (private to src/score): the run state, the
 * work units, the member cache, and the scheduler queue. The public contract (assignment rules,
 * memory budget, progress, schedule log) is in include/quorum/score.h.
 */
#ifndef QUORUM_SCORE_INTERNAL_H
#define QUORUM_SCORE_INTERNAL_H

#include <stdint.h>

#include "quorum/score.h"

/* One work unit: score shard `shard` of corpus `corpus` with member `member`. */
typedef struct {
    int corpus, member;
    int64_t shard;
} WorkItem;

typedef struct {
    const Job *job;
    const char *only_corpus;                    /* --corpus, or NULL */
    int use[JOB_MAX_CORPORA];                   /* corpora selected by --corpus */
    CorpusManifest man[JOB_MAX_CORPORA];
    char *dir[JOB_MAX_CORPORA];                 /* corpus folders */
    int loaded[JOB_MAX_CORPORA];                /* manifest read (to free) */
    WorkItem *units;                            /* every unit still to score, member-major; same on every rank */
    int64_t n_units, todo_pairs, skipped_files;
    uint64_t member_fp[JOB_MAX_MEMBERS];        /* member_fingerprint(), computed by rank 0 */
    double member_params[JOB_MAX_MEMBERS];      /* member_params(), computed by rank 0 */
    double member_bytes[JOB_MAX_MEMBERS];       /* member_bytes(), computed by rank 0 */
    /* The member cache (score.h "Memory budget"): members open on this rank. */
    Member member[JOB_MAX_MEMBERS];
    int open[JOB_MAX_MEMBERS];
    int64_t last_use[JOB_MAX_MEMBERS], tick;
    double budget_gb;                           /* QUORUM_RANK_MEM_GB; 0 = one member at a time */
    int64_t files_written;                      /* by this rank, for the test hook */
    double busy_s;                              /* seconds this rank spent in units (loads included) */
} ScoreRun;

/* score_job.c: scores unit u (loads its member first when needed; *load_s = seconds spent loading)
 * and writes its score file. 0 or -1 after one line. */
int score_unit(ScoreRun *run, const WorkItem *w, double *load_s);
/* Makes member m open (score.h "Memory budget"): least recently used members are closed until it fits
 * run->budget_gb (all of them when there is no budget: one member at a time). *load_s = seconds spent
 * opening, 0 when it was open. 0 or -1 after one line. */
int score_member_acquire(ScoreRun *run, int m, double *load_s);
/* Bitmask of the members open on this rank. */
uint32_t score_open_mask(const ScoreRun *run);
/* The template check (Member.check) over units[0..n), grouped by member. 0 or -1 after one line. */
int score_check_units(ScoreRun *run, const WorkItem *units, int64_t n);
/* Test hooks after a written score file (score.h). */
void score_test_hooks(ScoreRun *run, const WorkItem *w, int rank, int world);
/* "score: done/total pair-scores (x%), r/s, ETA s[; extra]" at most every `every` seconds (always when
 * final). */
void score_progress(int64_t done, int64_t total, double t0, double *last, double every, int final, double eta,
                    const char *extra);
/* Collective: gathers every rank's busy seconds and logs the load-balance summary line on rank 0. */
void score_summary(const ScoreRun *run, const char *mode, double wall_s);

/* score_dispatch.c: the dynamic schedule (rank-0 dispatcher thread). Collective; 0, -1 or
 * QUORUM_EXIT_REQUEUE, the same on every rank. */
int score_dispatch(ScoreRun *run);

/* score_sched.c: the queue policy, no MPI (so it is unit-tested by itself). */
typedef struct {
    int64_t n;                      /* units */
    int n_members, world;
    const int *member;              /* [n] member of each unit */
    const double *cost;             /* [n] predicted cost */
    int64_t *order;                 /* [n] unit ids grouped by member, each group by cost, largest first */
    int64_t start[JOB_MAX_MEMBERS + 1], next[JOB_MAX_MEMBERS];
    double remaining[JOB_MAX_MEMBERS];  /* cost not yet handed out, per member */
    uint32_t *held;                 /* [world] members each rank holds (or is loading), as last reported */
    int64_t given;
} Sched;

void sched_init(Sched *s, const int *member, const double *cost, int64_t n, int n_members, int world);
void sched_free(Sched *s);
/* The next unit for `rank`, which holds the members in `held` (bit m = member m open): -1 when none is
 * left. The rule is score.h's "Dynamic schedule". */
int64_t sched_next(Sched *s, int rank, uint32_t held);

/* Predicted cost inputs: a member's parameter count (HF: the safetensors header's element count;
 * builtin: 1) or -1 after one line; the text bytes a shard makes a member read (2 x prompt + chosen +
 * rejected; 1 + pairs when the shard cannot be read here: scoring it reports why). */
double member_params(const JobMember *cfg);
/* The memory budget's size of a member (score.h "Memory budget"): bytes of its weights as loaded for scoring
 * (2 B per matrix element of an all-bf16 checkpoint, else 4 B; builtin: 4), both models of an implicit
 * member; -1 after one line. */
double member_bytes(const JobMember *cfg);
double shard_text_bytes(const char *shard_file, int64_t pairs);

#endif /* QUORUM_SCORE_INTERNAL_H */
