/*
 * quorum/train.h - data-parallel DPO and Bradley-Terry reward-model training (CPU reference backend).
 *
 * Layers, bottom up; each is a pure function or a small struct so it can be tested on its own:
 *   1. losses      DPO (sigmoid/cDPO, ipo, hinge, robust) and Bradley-Terry, forward + backward over
 *                  per-sequence values (log-prob sums or rewards). Formulas as TRL's DPOTrainer and
 *                  RewardTrainer: z = (pi_c - pi_r) - (ref_c - ref_r)
 *                    sigmoid  -(1-e) logsig(b z) - e logsig(-b z)          (e = label_smoothing: cDPO)
 *                    robust   (-(1-e) logsig(b z) + e logsig(-b z)) / (1-2e) (Chowdhury et al. 2024)
 *                    hinge    relu(1 - b z)
 *                    ipo      (z - 1/(2b))^2   (the trainer feeds length-averaged log-probs, as TRL)
 *                    BT       -logsig(r_c - r_r - margin) + center * (r_c + r_r)^2
 *   2. optimizer   AdamW with fp32 master weights (decoupled decay, bias correction, torch semantics),
 *                  HF-style warmup + constant/cosine schedule, global-norm clipping (torch semantics).
 *   3. trainer     one loop for DPO and RM: a global batch of pairs per optimizer step, split into
 *                  per-rank slices and micro-batches; grads scaled by 1/GLOBAL pairs, summed with
 *                  bucketed MPI_Iallreduce, so results do not depend on the rank count; optional
 *                  ZeRO-1 (AdamW state for a 1/R slice per rank + MPI_Allgatherv of params);
 *                  checkpoint/resume; metrics.jsonl.
 *   4. commands    quorum dpo / rm-train / init-model (cmd_*.c), and their function forms below.
 *
 * The trainer sees a model only through TrainModel (flat fp32 params + grads, a batched forward that
 * returns one value per sequence, a backward that accumulates grads), so the machinery is tested with
 * small closed-form models as well as with the HF architectures of model.h.
 */
#ifndef QUORUM_TRAIN_H
#define QUORUM_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "quorum/job.h"
#include "quorum/rng.h"

/* ---------------------------------------------------------------- 1. losses */

typedef struct {
    DpoLoss type;
    float beta;
    float label_smoothing;
} DpoLossCfg;

/* Sums over pairs of what TRL logs (divide by the pair count for the means). */
typedef struct {
    double loss, reward_chosen, reward_rejected, accuracy, margin, logp_chosen, logp_rejected;
    double n; /* pairs summed */
} PairMetrics;

/* B pairs: policy (pc, pr) and reference (rc, rr) per-sequence log-probs, each (B,). Returns the SUM of
 * per-pair losses; writes scale * dloss_i/d{pc,pr,rc,rr}[i] into the non-NULL grad arrays (B,);
 * adds to *met when non-NULL. scale is typically 1/global_batch (the loss is a mean over pairs). */
double dpo_loss(const DpoLossCfg *c, int B, const float *pc, const float *pr, const float *rc,
                const float *rr, float scale, float *dpc, float *dpr, float *drc, float *drr, PairMetrics *met);

/* Bradley-Terry reward loss over B pairs of rewards (B,), as dpo_loss. Metrics: reward_* are the mean
 * rewards, accuracy is r_c > r_r, margin r_c - r_r; logp_* unused. */
double bt_loss(int B, const float *r_c, const float *r_r, float margin, float center_coef, float scale,
               float *dr_c, float *dr_r, PairMetrics *met);

/* Numerically stable log(sigmoid(x)). */
double log_sigmoid(double x);

/* ---------------------------------------------------------------- 2. optimizer */

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_clip;    /* global L2 norm; 0 disables */
    int warmup_steps, total_steps;
    int cosine;         /* 0 = constant after warmup, 1 = cosine decay to 0 at total_steps */
} OptimCfg;

void optim_defaults(OptimCfg *o); /* lr 5e-6, betas (0.9, 0.999), eps 1e-8, wd 0, clip 1, constant */

/* Learning rate for 0-based optimizer step `step` (HF get_constant/cosine_schedule_with_warmup). */
float lr_at(const OptimCfg *o, int step);

/* In-place clip of g[0..n) to global norm max_norm given its already-computed norm (torch
 * clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when < 1). */
void grad_clip_apply(float *g, size_t n, double norm, float max_norm);

/* One AdamW update of p[0..n) with grads g and moments m, v; t is the 1-based step (bias correction).
 * decay (n,) or NULL: weight decay applies where decay[i] is 1 (NULL: everywhere). */
void adamw_update(float *p, const float *g, float *m, float *v, const uint8_t *decay, size_t n, float lr,
                  const OptimCfg *o, int t);

/* ---------------------------------------------------------------- 3. trainer */

typedef struct TrainModel TrainModel;
struct TrainModel {
    float *params, *grads; /* flat fp32, n_params each; grads accumulate across backward calls */
    size_t n_params;
    /* ids (B,T) right-padded, lens (B,), mask (B,T): out[b] = per-sequence value (log-prob sum over the
     * mask for a policy, reward for a reward model). Keeps what backward needs. */
    void (*forward)(TrainModel *m, const int32_t *ids, const int *lens, const uint8_t *mask, int B, int T,
                    float *out);
    /* Accumulates d(objective)/d(params) given dout (B,) of the last forward. */
    void (*backward)(TrainModel *m, const float *dout);
    void (*zero_grad)(TrainModel *m);
    /* (n_params,) 1 where weight decay applies, or NULL for everywhere. HF Trainer's rule (what TRL
     * uses): no decay for biases and norm weights, i.e. the 1-D tensors of these architectures. */
    const uint8_t *decay_mask;
    void *impl;
};

/* Tokenized pairs: per pair the full chosen / rejected sequence (prompt + response, already
 * truncated) and the prompt length inside each; flat int32 ids with int64 offsets. */
typedef struct {
    int64_t n;
    int32_t *ids; int64_t n_ids, cap_ids;
    int64_t *chosen_off, *rejected_off; /* (n+1): pair i = ids[chosen_off[i], chosen_off[i+1]): its chosen
                                           sequence up to rejected_off[i], then its rejected sequence */
    int32_t *prompt_len;                /* (n,) identical prefix length of both sequences */
    int64_t *pair_id;                   /* (n,) source id, for messages */
    float *ref_chosen, *ref_rejected;   /* (n,) DPO reference log-probs (NULL until computed) */
} TokPairs;

void tokpairs_free(TokPairs *p);
/* Appends one pair after TRL classic truncation (see pair_truncate). */
void tokpairs_push(TokPairs *p, int64_t pair_id, const int32_t *prompt, int np, const int32_t *chosen, int nc,
                   const int32_t *rejected, int nr, int max_length, int max_prompt_length);

/* TRL classic DPOTrainer truncation: when prompt + longer response exceeds max_length, keep the last
 * max_prompt_length prompt tokens; if still too long, keep the first max_length - max_prompt_length
 * tokens of each response. Updates *np, *nc, *nr and *prompt_start (first prompt token kept). */
void pair_truncate(int *np, int *prompt_start, int *nc, int *nr, int max_length, int max_prompt_length);

typedef enum { OBJ_DPO = 0, OBJ_BT = 1 } Objective;

typedef struct {
    Objective objective;
    DpoLossCfg dpo;             /* OBJ_DPO */
    float bt_margin, bt_center; /* OBJ_BT */
    OptimCfg optim;
    int steps;                  /* optimizer steps */
    int batch_size;             /* GLOBAL pairs per optimizer step */
    int grad_accum;             /* micro-batches per rank per step */
    int zero1;                  /* shard AdamW state over ranks */
    int checkpoint_every;       /* steps; 0 = only at the end / on a stop request */
    uint64_t seed;
    char out[1024];             /* metrics.jsonl, checkpoint/, final/ */
    size_t bucket_floats;       /* allreduce bucket size (default 1<<20) */
    int quiet;                  /* no per-step stdout lines */
} TrainCfg;

void train_cfg_defaults(TrainCfg *c);

/* Per-step log (what rank 0 writes to stdout and metrics.jsonl; tests read it back). */
typedef struct {
    int step;
    double loss, reward_chosen, reward_rejected, accuracy, margin, logp_chosen, logp_rejected;
    double grad_norm, lr, tokens_per_s, epoch;
    double step_s, allreduce_s; /* wall time of the step; of it, rank 0's wait for the gradient allreduce */
} StepLog;

/* Runs optimizer steps up to cfg->steps over `data` (every rank holds the whole TokPairs; each takes
 * its slice of every global batch). Resumes from <out>/checkpoint when present (any rank count: the
 * checkpoint holds the full state). Collective over MPI_COMM_WORLD. If `log` is non-NULL, log[s-1]
 * receives step s for the steps run by this call (on every rank). Stop: SIGUSR1 (and SIGTERM with
 * quorum/signal.h) -> checkpoint at the end of the current step and return 99. Returns 0, 99, or -1
 * after a one-line error. */
int train_run(const TrainCfg *cfg, TrainModel *m, const TokPairs *data, StepLog *log);

/* The pair indices a run visits: global batch k of a run with batch size B is out[k*B .. k*B+B) of
 * count = steps*B indices. Epoch e is a Fisher-Yates shuffle of 0..n-1 by one xoshiro stream seeded
 * (seed, 0x0da7a) that continues across epochs. Rank r of R takes [B*r/R, B*(r+1)/R) of each batch. */
void train_batch_order(uint64_t seed, int64_t n, int64_t count, int64_t *out);

/* Computes data->ref_chosen/ref_rejected with model m over all ranks (each rank a slice of the pairs,
 * `batch` pairs per forward, then MPI_Allgatherv); caches them in `path` (HDF5: pair_id int64[n],
 * chosen, rejected float32[n], attr key = FNV-1a of the token data, the params and ipo_average) and
 * reuses a cache whose key matches. ipo_average: store mean per-token log-probs (TRL's ipo). 0 or -1. */
int ref_logps_compute(TrainModel *m, TokPairs *data, int batch, const char *path, int ipo_average);

/* Fills a right-padded (B,T) batch of the sequences of pairs idx[0..B) (first all chosen, then all
 * rejected: 2B rows), the completion masks and the lengths; returns T. Buffers are grown as needed. */
int batch_build(const TokPairs *d, const int64_t *idx, int B, int32_t **ids, uint8_t **mask, int **lens,
                size_t *cap);

/* ---------------------------------------------------------------- 4. commands as functions */

typedef struct {
    char policy[1024];        /* HF causal-LM folder (reference = the same initial weights) */
    char corpus_dir[1024];    /* a corpus folder (manifest.json + shards); several joined by ',' */
    char out[1024];
    TrainCfg train;
    int max_length, max_prompt_length;
} DpoOptions;

typedef struct {
    char model[1024];         /* HF *ForSequenceClassification folder (e.g. from init-model --head score) */
    char corpus_dir[1024];
    char out[1024];
    TrainCfg train;
    int max_length;
    int slice_k, slice_K;     /* train on the k-th of K disjoint slices of the pairs (0/1 = all) */
} RmOptions;

/* Held-out preference accuracy of a trained policy against its reference, on ground-truth pairs:
 * accuracy = fraction with implicit-reward margin (logp_pi(c) - logp_ref(c)) - (logp_pi(r) - logp_ref(r))
 * > 0 (what TRL logs as rewards/accuracies, here on pairs the policy never saw); mean_margin is that
 * margin's mean (nats; times beta = the implicit reward margin); logp_accuracy = fraction where the
 * policy alone gives the chosen response the higher log-prob. Collective over MPI_COMM_WORLD. */
typedef struct {
    int64_t n;
    double accuracy, mean_margin, logp_accuracy;
} PrefEval;
int dpo_eval(const char *policy_dir, const char *ref_dir, const char *corpus_dirs, int max_length,
             int max_prompt_length, PrefEval *res);
int dpo_train(const DpoOptions *o);
int rm_train(const RmOptions *o);
/* Trains job->dpo.policy on the job's cleaned corpus (<out_dir>/cleaned/<corpus>), output in
 * <out_dir>/dpo. */
int dpo_job(const Job *job);

typedef struct {
    char arch[16];            /* "gpt2" | "llama" | "qwen3" | "gemma2" | "gemma3" */
    int layers, dim, heads, kv_heads, ffn; /* ffn 0 = 4*dim (gpt2) or the llama default */
    int vocab;                /* 0 = from the tokenizer */
    int max_pos;              /* gpt2 n_positions (default 1024) */
    char head[8];             /* "lm" | "score" | "mlp" (INF-ORM Linear+ReLU+Linear reward head) | "armo" */
    int num_labels;           /* score head outputs (default 1) */
    char tokenizer[1024];     /* folder with tokenizer.json (+ tokenizer_config.json), copied */
    uint64_t seed;
    char out[1024];
} InitModelOptions;

/* Random-init tiny HF checkpoint (normal(0, 0.02), zero biases, ones for norm weights):
 * config.json + model.safetensors + tokenizer files. 0 or -1. */
int model_init_random(const InitModelOptions *o);

/* The stage's subcommands (argv[0] = the subcommand name; returns the exit code: 0 ok, 1 failure, 2 usage;
 * quorum/cli.h has the conventions). */
int cmd_init_model(int argc, char **argv); /* a small random-init HF checkpoint */
int cmd_dpo(int argc, char **argv);        /* data-parallel DPO */
int cmd_rm_train(int argc, char **argv);   /* Bradley-Terry reward-model training */

#endif /* QUORUM_TRAIN_H */
