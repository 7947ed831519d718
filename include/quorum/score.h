/*
 * quorum/score.h - committee scoring: members, the schedule of work units over ranks, score files.
 *
 * Work units: (member, corpus, shard). A shard is always scored whole by one rank, in batches fixed by the
 * shard and batch_size, so a pair's rewards never depend on which rank scored it or on the schedule.
 *
 * Dynamic schedule (the default; src/score/score_dispatch.c, score_sched.c): rank 0 runs a dispatcher
 * thread (needs MPI_THREAD_MULTIPLE, which `quorum` asks for at MPI_Init_thread) that hands out units
 * one at a time to whichever rank asks, rank 0's own scoring included. A thread polling MPI_Test every
 * millisecond rather than MPI_Fetch_and_op counters: Open MPI 4.1 over TCP has no asynchronous progress,
 * so a one-sided request to rank 0 could wait as long as rank 0 spends scoring a shard.
 *   Cost model: cost(unit) = text bytes of the shard (2 x prompt + chosen + rejected, from the shard's
 *     dataset sizes: the manifest holds no token counts) x the member's parameter count (HF: the sum of
 *     the safetensors tensors' element counts, an implicit member's reference included; builtin: 1).
 *     Only the order depends on it.
 *   Choice for a rank that asks, holding members H (see "Memory budget"):
 *     1. a member of H with units left: the one with the most cost left (no model load);
 *     2. else a member no other rank holds: the most cost left (it must be loaded somewhere anyway);
 *     3. else the member with the most cost left per holder, counting the asking rank (it joins the
 *        longest tail: one large member spans ranks, its shards split among them).
 *     Ties: the lower member index. Within a member, the largest unit first, so the tail is short.
 *   Stop signal or error on any rank: the dispatcher hands out nothing more and answers "stop" to every
 *   request; units in flight finish and are written; rank 0 then broadcasts the return value.
 *   Progress (rank 0, every QUORUM_PROGRESS_SECS, default 10): pair-scores done / total, pair-scores/s,
 *   ETA from the cost left, units done / total, and per member "name done/total [ranks holding it]". At
 *   the end: "score: dynamic schedule, R rank(s): wall W s, work X s (..); busy r0 ..%" where work is the
 *   sum of every rank's seconds inside units (loads included) and busy is that rank's share of the wall.
 *   Schedule log: <out_dir>/scores/schedule.jsonl (schedule.<corpus>.jsonl for a --corpus run), written
 *   atomically by rank 0, one line per unit this run scored: {"corpus","member","shard","pairs","rank",
 *   "cost","predicted_s","seconds","load_s","given_s"}, predicted_s = cost x (this run's seconds per cost
 *   unit), given_s = when the unit was handed out (seconds after the start of the scoring loop).
 * Static schedule (QUORUM_SCORE_SCHEDULE=static, or an MPI without MPI_THREAD_MULTIPLE, said in one log
 * line): score_owner() below; rounds of one unit per rank, each ended by one allreduce carrying the stop
 * flag, errors and progress. Kept to compare against (benchmarks/sched.sh) and as the fallback.
 *
 * Memory budget: QUORUM_RANK_MEM_GB (per rank; unset or 0: one member open at a time). A member's size
 * is its weights as loaded for scoring (quorum/model.h): 2 B per matrix element of a checkpoint whose
 * matrices are all BF16 (kept bf16), else 4 B per parameter (fp32); a builtin member counts 4 B. Before
 * opening a member, a rank closes least recently used members until the open ones plus the new one fit
 * the budget, so several small members stay loaded together and the budget is never exceeded, except by
 * a member larger than the budget on its own: it is loaded alone, with a warning line.
 *
 * Resume: the score files are the completion record. Every run lists the units whose file is not current
 * (rank r checks units u with u % R == r; one allreduce merges), so a killed or preempted job restarts
 * with any number of ranks and scores only the missing units.
 *
 * Score files (one per corpus x member x shard, so a restarted job skips finished work):
 *   <out_dir>/scores/<corpus>/<member>/shard-00000.h5
 *     /pair_id   int64[n]     the shard's pair ids, same order
 *     /chosen    float32[n]   member reward of the chosen response
 *     /rejected  float32[n]   member reward of the rejected response
 *     attrs member (string), shard_checksum (uint64, the corpus manifest's checksum of the input shard),
 *           member_fingerprint (uint64, member_fingerprint() of the member that wrote it)
 *   Written to a temp name and renamed: the file's existence is the shard's completion record. A file
 *   whose member, shard_checksum or member_fingerprint disagrees with the job is stale and is rescored;
 *   readers refuse a file whose member attribute is not the member it is read for.
 *
 * Non-finite rewards stop the stage with one line naming the member, its folder and the pair; nothing
 * is written for that shard.
 *
 * Members: a JobMember path names a Hugging Face folder (config.json + model.safetensors +
 * tokenizer.json [+ tokenizer_config.json]), or "builtin:<rule>" for a synthetic member whose reward is
 * a known function of the text (tests and the planted-noise experiments):
 *   builtin:len        reward = number of bytes of the response
 *   builtin:neglen     reward = -(number of bytes)
 *   builtin:hash[:S]   reward = a hash of (S, response bytes) mapped to [-1, 1): an uncorrelated voter
 *   builtin:kw:<word>  reward = occurrences of <word> in the response, minus 0.5
 * Precisely (so an independent implementation reproduces them bit for bit): rewards are float32 of the
 * raw response bytes (Pair.chosen / Pair.rejected, no template); hash is FNV-1a 64 over the 8
 * little-endian bytes of S (default 0) then the response, reward = (h >> 40) / 2^23 - 1; kw counts
 * non-overlapping, case-sensitive byte matches left to right (Python's bytes.count).
 * "<jobdir>/builtin:..." (what job-relative path resolution makes of it) is accepted too.
 *
 * Member kinds (JobMember.kind). A score file always holds one float per response (/chosen, /rejected);
 * what it means depends on the kind (a builtin member of any kind writes its rule's value, so the
 * cleaning rules of every kind can be tested exactly):
 *   reward    the reward model's reward (above). Only reward members vote (quorum/vote.h).
 *   lm        a causal LM folder (*ForCausalLM + tokenizer [+ chat template]); the score is the
 *             Instruction-Following Difficulty of the response (Li et al. 2024, "From Quantity to
 *             Quality", as PrefCleanBench's ifd rules use it):
 *               IFD(y | x) = PPL(y | x) / PPL(y) = exp(mean_t log p(y_t | y_<t) - mean_t log p(y_t | x, y_<t))
 *             conditional: the pair rendered with the member's chat template (prompt ++ response ids,
 *             TRL classic truncation at max_length with max_prompt_length = max_length / 2, the DPO
 *             trainer's rule), the mean over every response token; unconditional: the same (truncated)
 *             response ids alone, after the tokenizer's BOS when it has one (else the first token has no
 *             context and is not scored). A response with no scored token gets MEMBER_IFD_EMPTY (10,
 *             PrefCleanBench's value for an empty chosen response).
 *   implicit  a DPO policy folder (path) and its reference (ref), causal LMs sharing the policy's
 *             tokenizer: score = log pi(y|x) - log pi_ref(y|x), the sums of response-token log-probs of
 *             the rendered, truncated pair as in lm (the DPO implicit reward without beta;
 *             PrefCleanBench's rw_gap averages its gap over 8 DPO models). `quorum dpo` makes such
 *             policies: its output folder's final/ is the policy, its --policy the reference.
 *   judge     an instruct causal LM folder and a prompt template (prompt_template, a text file with a
 *             {response} and optionally a {prompt} placeholder; default MEMBER_JUDGE_DEFAULT_TEMPLATE).
 *             The template, with {prompt} = the dialogue as "Human: t1\n\nAssistant: t2\n\nHuman: t3"
 *             (roles System, Human, Assistant, Observation, Function call) and {response} = the
 *             response text, is one user turn rendered with the judge's chat template; answer k
 *             ("1".."10") is rendered as the assistant response. With lp_k = log P(answer k | judging
 *             prompt) (the sum over the answer's tokens, end-of-turn included where the template has one),
 *             score = sum_k k * exp(lp_k) / sum_j exp(lp_j): the expected rating, no sampling. A prompt
 *             longer than max_length loses its start (TRL rule with max_prompt_length = max_length - 8:
 *             the default template ends with the instruction).
 * Every log-prob is the engine's DPO path: TokPairs + batch_build (quorum/train.h) and model_logprobs
 * (quorum/model.h), batch_size sequences per forward.
 *
 * Preemption: score_job polls quorum_stop_requested() (quorum/signal.h) after every shard; on
 * SIGUSR1/SIGTERM every rank finishes its shard in flight, writes it, and score_job returns
 * QUORUM_EXIT_REQUEUE (99) on every rank (0 when every unit was written anyway).
 *
 * Test-only hooks (environment variables, never set in production):
 *   QUORUM_TEST_DIE_AFTER_SHARDS=k  rank 1 (rank 0 in a 1-rank run) raises SIGKILL right after writing
 *                                   its k-th score file (crash-restart tests)
 *   QUORUM_TEST_SLOW_SHARD_MS=ms    every rank sleeps ms after each shard (so a test can signal mid-run)
 *   QUORUM_TEST_HOLD_FILE=path      every rank waits after each shard while path exists (120 s at most): a
 *                                   test holds a run busy for exactly as long as its checks take
 *   QUORUM_TEST_UNIT_LOG=path       every rank appends "corpus member shard rank" per score file written
 *   QUORUM_TEST_SLOW_MEMBER_US=name:us[,name:us]  the member sleeps us per pair after scoring (counted as
 *                                   busy): members of known, unequal cost for benchmarks/sched.sh
 */
#ifndef QUORUM_SCORE_H
#define QUORUM_SCORE_H

#include <stdint.h>

#include "quorum/corpus.h"
#include "quorum/job.h"

typedef struct Member Member;

/* Scores n pairs: rewards of the chosen and of the rejected response of each. 0 or -1 after an error. */
typedef int (*MemberScoreFn)(Member *m, const Pair *pairs, int64_t n, float *chosen, float *rejected);

struct Member {
    JobMember cfg;
    MemberScoreFn score;
    void (*close)(Member *m);
    void *impl;
    const char *corpus;   /* the corpus being scored (set by the caller; errors name it), or NULL */
    /* Optional (HF members): 0 when every pair renders with the member's template (after the fold
     * rule), else -1 after one line naming corpus, record, member and template. The score stage runs it
     * over each rank's shards before scoring anything, so a pair a template cannot take stops the job at
     * its start, not after hours of scoring. */
    int (*check)(Member *m, const Pair *pairs, int64_t n);
};

/* Opens a member (builtin or HF). 0 or -1 after a one-line error naming the path. */
int member_open(Member *m, const JobMember *cfg);
/* Opens only what Member.check needs (HF: tokenizer + chat template, no weights; builtin: nothing, check
 * NULL). Close with member_close. 0 or -1 after a one-line error. */
int member_open_check(Member *m, const JobMember *cfg);
void member_close(Member *m);

/* Causal-LM members (src/score/member_lm.c): kinds lm, implicit and judge (see above). */
int member_lm_open(Member *m, const JobMember *cfg);
#define MEMBER_IFD_EMPTY 10.0
extern const char *const MEMBER_JUDGE_DEFAULT_TEMPLATE;

/* HF reward model member: src/score/member_hf.c (tokenizer + chat template + *ForSequenceClassification). */
int member_hf_open(Member *m, const JobMember *cfg);
int member_hf_open_template(Member *m, const JobMember *cfg); /* tokenizer + template only: for check */

/* The static schedule: with R ranks and N members, rank r hosts member r % N; the ranks hosting member m
 * (r = m, m+N, m+2N, ...) split that member's shards round-robin: the j-th of them takes shards k with
 * k % count_m == j. With R < N a rank hosts members r, r+R, r+2R, ... in turn. Returns the rank of
 * (member, shard). (The vote reads score files by a rule of its own, whoever scored them.) */
int score_owner(int member, int64_t shard, int n_members, int world);

/* corpus_manifest_read, except that a missing manifest (corpus never ingested) is reported in one
 * line by rank 0 rather than once per rank. Any rank, independent. 0 or -1. */
int score_manifest_read(CorpusManifest *m, const char *corpus_dir);

/* Score file path. Caller frees. */
char *score_path(const char *out_dir, const char *corpus, const char *member, int64_t shard);

/* Scores every corpus of the job (or only `only_corpus` when non-NULL) with every member over
 * MPI_COMM_WORLD (collective). Skips shards whose score file is present and current. 0, -1, or
 * QUORUM_EXIT_REQUEUE after a stop signal; the same value on every rank. */
int score_job(const Job *job);
int score_job_corpus(const Job *job, const char *only_corpus);

/* A member's identity (src/score/member_fp.c): builtin rule, or the HF folder's config.json, tokenizer
 * files, safetensors (size, mtime, first and last MiB; whole files with QUORUM_DEEP_FINGERPRINT=1),
 * plus max_length, batch_size (HF) and the truncation rule. 0, or -1 after one line naming the folder. */
int member_fingerprint(const JobMember *cfg, uint64_t *out);
/* Collective: rank 0 fingerprints every member of the job (an error is printed once); every rank gets
 * fp[0..n_members). 0, or -1 on every rank. */
int member_fingerprints(const Job *job, uint64_t *fp);

/* Reads one score file; checks its member attribute, n and pair ids against the shard, finite rewards. 0 or -1. */
int score_file_read(const char *path, const char *member, int64_t n, const int64_t *pair_id, float *chosen,
                    float *rejected);
/* 1 when the file exists, opens, and its member, member_fingerprint and shard_checksum equal these. */
int score_file_current(const char *path, const char *member, uint64_t member_fp, uint64_t shard_checksum);
int score_file_write(const char *path, const char *member, uint64_t member_fp, uint64_t shard_checksum, int64_t n,
                     const int64_t *pair_id, const float *chosen, const float *rejected);

/* `quorum score`: committee scores per pair (quorum/cli.h has the subcommand conventions). */
int cmd_score(int argc, char **argv);

#endif /* QUORUM_SCORE_H */
