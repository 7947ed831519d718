/*
 * quorum/vote.h - committee votes and agreement buckets.
 *
 * Member m agrees with the human label of pair i when chosen[m][i] - rejected[m][i] > margin (ties
 * disagree). Each rank reads the score files of the (member m, shard k) with (k*N + m) % R == rank,
 * whichever rank scored them, and counts their votes; one MPI_Allreduce(SUM) over MPI_COMM_WORLD merges
 * them into agree[i] (0..N).
 *
 * Buckets (N members, h = ceil(high_frac * N), default high_frac 0.5):
 *   NoAgree   agree == 0
 *   LowAgree  1 <= agree < h
 *   HighAgree h <= agree < N
 *   AllAgree  agree == N
 * (With N = 1: NoAgree or AllAgree only. With N = 2, h = 1: NoAgree, HighAgree, AllAgree.)
 *
 * Votes file, one per corpus, written collectively with MPI-IO (each rank writes a slab):
 *   <out_dir>/votes/<corpus>.h5
 *     /pair_id   int64[n]       every ingested pair of the corpus, in shard order
 *     /agree     int32[n]
 *     /bucket    uint8[n]       Bucket
 *     /chosen    float32[N][n]  per-member reward of the chosen response
 *     /rejected  float32[N][n]
 *     attrs members (string, names joined with ","), n_members, margin, high_frac, corpus, split
 */
#ifndef QUORUM_VOTE_H
#define QUORUM_VOTE_H

#include <stdint.h>

#include "quorum/job.h"

typedef enum { BUCKET_NO = 0, BUCKET_LOW = 1, BUCKET_HIGH = 2, BUCKET_ALL = 3, BUCKET_COUNT = 4 } Bucket;

typedef struct {
    char corpus[256], split[256];
    int n_members;
    char members[JOB_MAX_MEMBERS][256];
    float margin, high_frac;
    int64_t n;
    int64_t *pair_id;  /* [n] */
    int32_t *agree;    /* [n] */
    uint8_t *bucket;   /* [n] */
    float *chosen;     /* [N*n], member-major: chosen[m*n + i] */
    float *rejected;   /* [N*n] */
} Votes;

const char *bucket_name(Bucket b); /* "NoAgree", "LowAgree", "HighAgree", "AllAgree" */
/* The bucket of `agree` votes out of n_members under high_frac (see above). */
Bucket bucket_of(int agree, int n_members, float high_frac);

int votes_write(const Votes *v, const char *path); /* collective over MPI_COMM_WORLD; temp + rename */
int votes_read(Votes *v, const char *path);        /* any rank, independent; validates shapes */
void votes_free(Votes *v);
char *votes_path(const char *out_dir, const char *corpus); /* caller frees */

/* Member vote: 1 when (chosen - rejected) > margin in float32 arithmetic (ties disagree). */
int vote_agrees(float chosen, float rejected, float margin);

/* Statistics of one votes table, computed from the merged arrays in a fixed order, so every rank and
 * every rank count gets the same bits. Undefined values are NaN (written as JSON null): accuracy,
 * margins and agreement with no pairs; kappa with N = 1, no pairs, or one category only (P_e = 1). */
typedef struct {
    int64_t bucket_count[BUCKET_COUNT];
    double member_accuracy[JOB_MAX_MEMBERS];           /* fraction of pairs the member agrees with */
    double mean_margin[JOB_MAX_MEMBERS];               /* mean of chosen - rejected */
    double agreement[JOB_MAX_MEMBERS][JOB_MAX_MEMBERS];/* fraction of pairs where a and b vote alike */
    double fleiss_kappa;
} VoteStats;
void vote_stats(const Votes *v, VoteStats *st);
/* Fleiss' kappa, two categories (agree / disagree), n items rated by N members, agree[i] of whom
 * agree: P_i = (a(a-1) + d(d-1)) / (N(N-1)), p = sum a / (nN), P_e = p^2 + (1-p)^2,
 * kappa = (mean P_i - P_e) / (1 - P_e). */
double fleiss_kappa_binary(const int32_t *agree, int64_t n, int n_members);
/* <out_dir>/votes/<corpus>.stats.json, schema in README ("Votes"). Caller frees both. */
char *vote_stats_path(const char *out_dir, const char *corpus);
char *vote_stats_json(const Votes *v, const VoteStats *st);

/* Votes every corpus of the job (reads the score files, allreduce, writes votes + stats files).
 * Collective; 0 or -1 on every rank. */
int vote_job(const Job *job);

#endif /* QUORUM_VOTE_H */
