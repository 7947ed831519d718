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
 * The vote_* and margin_* families are named after PrefCleanBench ("Clean First, Align Later", Yeh & Li,
 * NeurIPS 2025, arXiv 2509.23564): multi-judge voting and reward-margin ranking, each with a remove and
 * a flip variant (the paper reports that removing pairs several judges flag beats flipping them). The
 * exact thresholds above are quorum's; only the paper's abstract could be checked, not its appendix.
 *
 * Flip swaps the chosen and rejected responses; the prompt and its turns stay.
 *
 * Output of clean_job, per corpus, in <out_dir>/cleaned/<corpus>/ (or <out_dir>/cleaned-<method>/
 * <corpus>/ when `quorum clean --method` overrides the job's method; "--method all" writes all eight):
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

/* Per-pair committee statistics (see the definitions above). */
double votes_mean_margin(const Votes *v, int64_t i);
double votes_mean_chosen(const Votes *v, int64_t i);
double votes_mean_rejected(const Votes *v, int64_t i);

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
