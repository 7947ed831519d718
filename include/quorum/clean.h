/*
 * quorum/clean.h - cleaning a voted corpus: Source-Aware Cleaning (SAC) and the PrefCleanBench
 * vote/margin family, the ledger that accounts for every input line, and the report.
 *
 * Every rule is a pure function of the votes file (include/quorum/vote.h): the decision for pair i
 * depends only on its agree count, its bucket, the per-member rewards and (margin_*) the ranking of all
 * pairs of the corpus by mean margin. So every rank computes the same actions from the same votes file,
 * and the output never depends on the number of MPI ranks; ranks only split the shard *writing*.
 *
 * Definitions (N members; s_m(c), s_m(r) = member m's reward of the chosen / rejected response):
 *   mean margin      M_i  = (1/N) sum_m (s_m(c_i) - s_m(r_i))      (double, members summed in order)
 *   mean reward      C_i  = (1/N) sum_m s_m(c_i),  R_i = (1/N) sum_m s_m(r_i)
 *   disagree         N - agree_i  (a member agrees when s_m(c) - s_m(r) > vote.margin; ties disagree)
 *
 *   none             keep everything (the baseline).
 *   sac              Source-Aware Cleaning, bucket by bucket:
 *                      NoAgree              -> flip   (the whole committee prefers the rejected response)
 *                      LowAgree, split in clean.splits:
 *                                              remove when C_i < bad_threshold AND R_i < bad_threshold
 *                                              (both responses bad: no usable preference), else keep
 *                      LowAgree, other split -> keep  (helpfulness disagreement is taste, not noise)
 *                      HighAgree / AllAgree -> keep
 *   vote_all_remove  agree_i == 0            -> remove, else keep   (all members disagree)
 *   vote_all_flip    agree_i == 0            -> flip,   else keep
 *   vote_maj_remove  N - agree_i > N/2       -> remove, else keep   (strict majority disagrees)
 *   vote_maj_flip    N - agree_i > N/2       -> flip,   else keep
 *   margin_remove    the k = floor(p * n) pairs with the lowest M_i -> remove (p = clean.p rounded
 *   margin_flip      to 6 decimals, n = pairs in the corpus; ties in M_i broken by the smaller pair id first,
 *                    so the set is deterministic)                   -> flip
 *   The committee statistics above (agree, M_i, C_i, R_i) count the reward members only (JobMember.kind,
 *   quorum/vote.h); vote_* act on nothing when the committee has no reward member.
 *
 * PrefCleanBench ("Clean First, Align Later", Yeh & Li, NeurIPS 2025, arXiv 2509.23564) names 13
 * methods; quorum computes nine of them with its own members (PrefCleanBench name in brackets). The
 * definitions follow the benchmark's released code (data_cleaning.py of github.com/deeplearning-wisc/
 * PrefCleanBench, read in a public copy), with k = floor(p * count) as int(len * p) there:
 *   vote_all_remove [vote_all_r], vote_all_flip [vote_all_f]: a member votes 1 when s(c) - s(r) > 0;
 *                    act when no member votes 1 (above, with vote.margin = 0).
 *   vote_maj_remove [vote_maj_r], vote_maj_flip [vote_maj_f]: act when agree < N/2, i.e. disagree > N/2;
 *                    with N even, agree == N/2 is a tie and is kept (the benchmark's `agreeing < N / 2`).
 *   margin_* have no PrefCleanBench counterpart over reward models (rw_gap_* is the benchmark's gap rule).
 * With the per-member scores of the other member kinds (quorum/score.h), averaged over the members of
 * that kind in committee order (the benchmark uses one IFD model, one judge, and averages rw_gap over
 * its 8 DPO models):
 *   IFD_c(i), IFD_r(i)  mean IFD of the chosen / rejected response over the lm members
 *   G_i = mean over lm members of (IFD_c - IFD_r)            (ifd gap)
 *   W_i = mean over implicit members of (r(c) - r(r))        (implicit reward gap)
 *   J_i = mean over judge members of (rating(c) - rating(r)) (judge gap)
 *   ifd_r            [ifd_r] remove every pair with IFD_c(i) > 1, and of the others (IFD_c <= 1, the
 *                    candidates) remove the k = floor(p * candidates) with the lowest IFD_c (the
 *                    benchmark keeps argsort(candidates)[k:]; its code indexes the dataset with
 *                    positions in the candidate list, which quorum reads as the evident intent).
 *   ifd_gap_r/_f     [ifd_gap_r / ifd_gap_f] the k = floor(p * n) pairs with the lowest G_i -> remove / flip
 *   rw_gap_r/_f      [rw_gap_r / rw_gap_f] the k = floor(p * n) pairs with the lowest W_i -> remove / flip
 *   llm_judge_r/_f   [llm_judge_r / llm_judge_f] J_i < 0 -> remove / flip; J_i == 0 (a tie) is kept, as
 *                    the benchmark's `predict < 0`
 * The ranking rules order by value, then by pair id (the benchmark's np.argsort leaves ties in an
 * unspecified order), so the set is deterministic. A rule whose member kind is absent from the
 * committee is refused with one line (`--method all` skips it with a log line).
 *
 * Calibrated committees (none of the anchors has them). Reward models live on different scales, so a
 * raw mean margin lets the widest member dominate. Before any rule, the reward members' scores are
 * replaced (clean_calibrate), member by member, over the corpus's 2n scores x (all chosen, then all
 * rejected):
 *   normalize "none"    x
 *             "zscore"  (x - mu) / sigma, mu and sigma (population) over the 2n values summed in that
 *                       order in double; sigma == 0 gives 0
 *             "rank"    (average 0-based rank of x among the 2n values, ties sharing it) / (2n - 1)
 *   then times w_m * V / sum(w) (w_m = clean.weights[name], default 1; V = reward members), rounded to
 *   float32, so the plain means M_i, C_i, R_i above are the weighted means of the normalized scores.
 * Votes (agree, buckets) are the votes file's: a vote is a sign, which neither changes. With
 * normalization, SAC's bad_threshold is in normalized units. The ledger's "calibration" section has,
 * per reward member, its weight, label_agreement (fraction of pairs with calibrated s(c) - s(r) > 0) and
 * loo_agreement (fraction of pairs where that vote equals the sign of the sum of the other reward
 * members' calibrated margins, summed in committee order; null with one reward member): a member
 * that agrees with the labels but not with the rest of the committee, or the reverse, is the one to drop.
 *
 * Consensus of methods (consensus_r / consensus_f): every method of clean.consensus (default sac,
 * vote_maj_remove, margin_remove) decides on its own; a pair is removed / flipped when at least
 * clean.consensus_k (default 2) of them act on it (flip or remove), else kept.
 *
 * Flip swaps the chosen and rejected responses; the prompt and its turns stay.
 *
 * Output of clean_job, per corpus, in <out_dir>/cleaned/<corpus>/ (or <out_dir>/cleaned-<method>/
 * <corpus>/ when `quorum clean --method` overrides the job's method; "--method all" writes every method
 * whose member kind the committee has):
 *   shard-00000.h5 ...  shard k = the kept and flipped pairs of input shard k (same layout as ingest)
 *   manifest.json       as the ingest manifest: the folder is itself a corpus. n_lines = input lines,
 *                       n_pairs = kept + flipped, n_rejected = removed + rejected-at-ingest; source and
 *                       source_checksum stay those of the original input. (No index.h5/rejects.jsonl:
 *                       those describe the input lines and stay in the ingest folder.)
 *   cleaned.jsonl       {"id","split","prompt","chosen","rejected","action"} per kept/flipped pair, in
 *                       pair-id order; the strings are the raw stored bytes (after the flip)
 *   actions.jsonl       {"id","bucket","action"} for every ingested pair, in pair-id order
 *   ledger.json         counts per bucket x action, the ingest rejects, and the input checksums;
 *                       lines == kept + flipped + removed + rejected, always. Written last.
 * Every file is written to a temp name and renamed.
 */
#ifndef QUORUM_CLEAN_H
#define QUORUM_CLEAN_H

#include <stdint.h>

#include "quorum/job.h"
#include "quorum/vote.h"

typedef enum { ACTION_KEEP = 0, ACTION_FLIP = 1, ACTION_REMOVE = 2, ACTION_COUNT = 3 } CleanAction;

const char *clean_action_name(CleanAction a); /* "keep", "flip", "remove" */
/* clean_method_name / clean_method_parse: quorum/job.h, beside the method enum and its names. */

/* Per-pair committee statistics (see the definitions above): reward members only. */
double votes_mean_margin(const Votes *v, int64_t i);
double votes_mean_chosen(const Votes *v, int64_t i);
double votes_mean_rejected(const Votes *v, int64_t i);

/* Mean over the members of one kind of wc * chosen + wr * rejected (pair index i), members summed in
 * committee order in double; 0 when the committee has no member of that kind. */
double votes_kind_mean(const Votes *v, int64_t i, MemberKind kind, double wc, double wr);
/* The member kind a method reads (MEMBER_REWARD for none, sac, vote_*, margin_*). */
MemberKind clean_method_kind(CleanMethod m);

/* Calibrated committees (above): rewrites the reward members' chosen/rejected of v in place. */
void clean_calibrate(const JobClean *cfg, Votes *v);
/* Per member m: label[m], loo[m] as in the ledger's calibration section (NaN for non-reward members). */
void clean_member_agreement(const Votes *v, double *label, double *loo);

/* How many pairs margin_* acts on: floor(p * n), clamped to [0, n], with p read as its 6-decimal value
 * (the job stores a float32: 0.7 must mean 0.7, not 0.69999999). */
int64_t clean_margin_count(float p, int64_t n);

/* Decides the action of every pair of one corpus: action[i] for v->pair_id[i] (n = v->n). Pure and
 * deterministic. The corpus split (for SAC) is v->split. */
void clean_decide(const JobClean *cfg, const Votes *v, uint8_t *action);

/* Counts of one corpus: lines = sum(count) + rejected. */
typedef struct {
    int64_t count[BUCKET_COUNT][ACTION_COUNT];
    int64_t lines, rejected; /* from the ingest manifest */
} Ledger;

void ledger_tally(Ledger *l, const Votes *v, const uint8_t *action);
int64_t ledger_total(const Ledger *l, CleanAction a); /* summed over buckets */
int ledger_balanced(const Ledger *l);                 /* 1 when lines == kept + flipped + removed + rejected */

/* Output folder of one corpus's cleaned data. method_override: NULL for the job's own method (folder
 * "cleaned"), else the method name (folder "cleaned-<method>"). Caller frees. */
char *clean_dir(const char *out_dir, const char *method_override, const char *corpus);

/* Cleans every corpus of the job (collective over MPI_COMM_WORLD). 0 or -1 after a one-line error. */
int clean_job(const Job *job);
/* Same, with the method overridden (NULL = the job's; "all" = every method, each in its own folder). */
int clean_job_method(const Job *job, const char *method_override);

/* Writes <out_dir>/report/{report.json, report.md, *.png} from the votes files, the stats.json files and
 * the ledgers (rank 0 works, the others wait). A missing gnuplot only drops the PNGs, with a warning.
 * 0 or -1. */
int report_job(const Job *job);
/* The Markdown of the last report_job on this rank ("" on ranks other than 0): `quorum report` prints it. */
const char *report_markdown_last(void);

/* CLI helper shared by `quorum clean` and `quorum report`: parses "--job J" and, when method is
 * non-NULL, "--method M". 0, or 2 (usage error) after printing the usage. */
#include <stdio.h>
int clean_parse_args(int argc, char **argv, const char **job, const char **method, void (*usage)(FILE *));

/* The stage's subcommands (argv[0] = the subcommand name; returns the exit code: 0 ok, 1 failure, 2 usage;
 * quorum/cli.h has the conventions). */
int cmd_clean(int argc, char **argv);  /* SAC and the PrefCleanBench family */
int cmd_report(int argc, char **argv); /* JSON / Markdown / PNG report */

#endif /* QUORUM_CLEAN_H */
