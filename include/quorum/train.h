/*
 * quorum/train.h - data-parallel DPO and Bradley-Terry reward-model training on the model's backend (CPU, the
 * reference, or CUDA: TrainOps below), full fine-tuning or LoRA, fp32 or bf16 + fp32 master weights.
 *
 * Layers, bottom up; each is a pure function or a small struct so it can be tested on its own:
 *   1. losses      the DPO family (TRL's DPOTrainer loss_type list, definitions in section 1) and
 *                  Bradley-Terry, forward + backward over per-sequence values (log-prob sums or rewards).
 *   2. optimizer   AdamW with fp32 master weights (decoupled decay, bias correction, torch semantics),
 *                  HF-style warmup + constant/cosine schedule, global-norm clipping (torch semantics).
 *   3. trainer     one loop for DPO and RM: a global batch of pairs per optimizer step, split into
 *                  per-rank slices and micro-batches; grads scaled by 1/GLOBAL pairs and summed over
 *                  ranks in buckets (CPU: MPI_Iallreduce posted during the backward; CUDA: NCCL, else
 *                  CUDA-aware MPI, else host-staged; fp32 or bf16 on the wire), so the objective does not
 *                  depend on the rank count (README: what is bit-identical across rank counts and what
 *                  differs by fp32 rounding); optional ZeRO-1 (AdamW state for a 1/R slice per rank +
 *                  MPI_Allgatherv of params); checkpoint/resume at any rank count; metrics.jsonl.
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
#include "quorum/ops.h"
#include "quorum/rng.h"
#include "quorum/tokpairs.h"

/* ---------------------------------------------------------------- 1. losses */

/* The DPO losses, named and defined as TRL's DPOTrainer (v1.x docs and dpo_trainer.py, 2026) unless
 * noted. Per pair i, with policy/reference completion log-prob sums pc, pr, rc, rr:
 *   c = pc - rc   r = pr - rr   z = c - r      b = beta, e = label_smoothing, s = sigmoid, ls = log s
 *   sigmoid       -ls(b z)                                              DPO, Rafailov et al. 2023
 *   hinge         relu(1 - b z)                                         RSO/SLiC, Liu et al. 2023
 *   ipo           (z - 1/(2b))^2  on SUMMED log-probs (current TRL)    IPO, Azar et al. 2023 (Eq. 17)
 *   robust        (-(1-e) ls(b z) + e ls(-b z)) / (1-2e),  e in [0,.5)  rDPO, Chowdhury et al. 2024
 *   exo_pair      KL(softmax(b (c, r)) || (1-e, e))
 *                 = s(bz)(ls(bz) - log(1-e)) + s(-bz)(ls(-bz) - log e), e in (0,1), TRL suggests 1e-3
 *                                                                       EXO, Ji et al. 2024 (Eq. 16)
 *   nca_pair      -ls(b c) - ls(-b c)/2 - ls(-b r)/2                    NCA, Chen et al. 2024
 *   bco_pair      -ls(b c) - ls(-b r)                                   BCO, Jung et al. 2024 (TRL: no running delta)
 *   sppo_hard     (c - 1/(2b))^2 + (r + 1/(2b))^2                       SPPO, Wu et al. 2024 (hard labels)
 *   aot           sort(pc - pr) and sort(rc - rr) over the B pairs; d_j = j-th - j-th;
 *                 -(1-e) ls(b d_j) - e ls(-b d_j)                       AOT, Melnyk et al. 2024 (paired)
 *   aot_unpaired  as aot with d_j = sort(c)_j - sort(r)_j               AOT (unpaired)
 *   apo_zero      1 - s(b c) + s(b r)                                   APO, D'Oosterlinck et al. 2024 (Eq. 7)
 *   apo_down      s(b c) + 1 - s(b z)                                   APO (Eq. 8)
 *   discopop      u = b z, m = s(u / tau): -ls(u)(1-m) + exp(-u) m      DiscoPOP, Lu et al. 2024 (Eq. 5)
 *   sft           -sum_i pc_i / sum_i nc_i  (token-mean NLL of the chosen completions)
 *   sigmoid_norm  sigmoid with c = (pc - rc)/nc, r = (pr - rr)/nr (nc, nr: completion tokens)  SimPO-style
 * and TRL's pre-2026 forms under their own names (TRL changed them; quorum keeps both, explicitly):
 *   cdpo          -(1-e) ls(b z) - e ls(-b z), e in [0, .5]: TRL's old "sigmoid" with label_smoothing
 *                 (cDPO, Mitchell 2023). TRL's sigmoid now ignores label_smoothing; quorum refuses a
 *                 non-zero label_smoothing for any loss that does not use it instead of ignoring it.
 *   ipo_mean      ipo on length-averaged log-probs (c, r as sigmoid_norm): TRL's earlier ipo.
 * aot, aot_unpaired and sft are batch-level: they couple the B pairs given to one call (TRL: the
 * per-device batch), so with these losses results depend on the micro-batch split (rank count and
 * grad_accum); every other loss is a sum of per-pair terms. */
typedef struct {
    DpoLoss type;
    float beta;
    float label_smoothing;
    float discopop_tau;   /* discopop only (TRL default 0.05) */
} DpoLossCfg;

/* One micro-batch of B pairs, each array (B,). */
typedef struct {
    int B;
    const float *pc, *pr;   /* policy log-prob sums over the chosen / rejected completion tokens */
    const float *rc, *rr;   /* reference model, same */
    const float *nc, *nr;   /* completion token counts; required when dpo_loss_needs_counts(), else may be NULL */
} DpoBatch;

typedef struct { float *dpc, *dpr, *drc, *drr; } DpoGrads; /* (B,) each; a NULL array is skipped */

/* Sums over pairs of what TRL logs (divide by the pair count for the means). Rewards are always
 * b * (unnormalized) log-ratios, as TRL logs them. */
typedef struct {
    double loss, reward_chosen, reward_rejected, accuracy, margin, logp_chosen, logp_rejected;
    double n; /* pairs summed */
} PairMetrics;

/* Returns the SUM over the B pairs of the per-pair losses (batch-level losses: B x their batch value, so
 * that dividing by the pair count gives TRL's mean); writes scale * dloss/d{pc,pr,rc,rr} into *g when
 * non-NULL; adds to *met when non-NULL. scale is typically 1/global_batch (the loss is a mean over pairs). */
double dpo_loss(const DpoLossCfg *c, const DpoBatch *x, float scale, const DpoGrads *g, PairMetrics *met);

/* 1 when the loss reads DpoBatch.nc/nr (sft, sigmoid_norm, ipo_mean). */
int dpo_loss_needs_counts(DpoLoss t);
/* 0 when beta, label_smoothing and discopop_tau are valid for the loss, else -1 with the reason (naming
 * the loss, the value and what is accepted) in why. */
int dpo_loss_check(const DpoLossCfg *c, char *why, size_t n);
/* dpo_loss_name / dpo_loss_parse (a loss_type name -> DpoLoss): quorum/job.h, beside the names. */

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
 * clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when < 1). grad_clip_coef: that factor, 1
 * when no clipping applies. */
void grad_clip_apply(float *g, size_t n, double norm, float max_norm);
float grad_clip_coef(double norm, float max_norm);

/* One AdamW update of p[0..n) with grads g and moments m, v; t is the 1-based step (bias correction).
 * decay (n,) or NULL: weight decay applies where decay[i] is 1 (NULL: everywhere). */
void adamw_update(float *p, const float *g, float *m, float *v, const uint8_t *decay, size_t n, float lr,
                  const OptimCfg *o, int t);

/* ---------------------------------------------------------------- 3. trainer */

/* The trainer's operations on parameter-sized fp32 buffers, one table per backend (src/train/train_ops.c):
 * train_ops_cpu works on host memory; train_ops_cuda (QUORUM_HAVE_CUDA) on device memory, so a model on
 * the CUDA backend trains without its params or grads leaving the GPU (except checkpoints and, ZeRO-1,
 * the host-staged all-gather). Collectives are over MPI_COMM_WORLD. */
typedef struct {
    const char *name;
    float *(*alloc_zeroed)(size_t n);                       /* AdamW moments */
    void (*free)(float *x);
    void (*to_host)(float *host_dst, const float *src, size_t n);
    void (*to_device)(float *dst, const float *host_src, size_t n);
    /* in-place SUM of g[0..n) over ranks (CPU: buckets of `bucket` floats, overlapped); returns the L2
     * norm of the summed gradient, identical on every rank. wire DT_F32: an fp32 MPI_Allreduce (or NCCL).
     * wire DT_BF16 (half the bytes), with more than one rank: per bucket, each rank's gradient is rounded to
     * bf16 (nearest even), every element is summed ONCE in fp32 in rank order (r = 0, 1, ...) by the rank
     * owning its chunk (MPI_Alltoallv), the sum rounded to bf16 and sent back to all (MPI_Allgatherv), so
     * g = bf16(sum_r bf16(g_r)) bit-identically on every rank. CUDA with NCCL: ncclAllReduce in ncclBfloat16
     * instead (NCCL's order, bf16 partial sums); CUDA without NCCL: this CPU twin on a host copy.
     * One rank: nothing crosses a wire, g is left as is (no rounding) either way. */
    double (*grads_allreduce)(float *g, size_t n, size_t bucket, DType wire);
    /* Overlap with the backward (fp32 wire, more than one rank; NULL = not on this backend, today CUDA):
     * overlap_begin(g, n, bucket) before the last backward of a step, whose model reports each parameter range
     * as its gradient becomes final through overlap_ready (a TrainModel.set_grad_ready hook); that posts every
     * bucket it completes. grads_allreduce then posts the rest and waits: the sum and the norm are bit-identical
     * to a reduction without overlap. */
    void (*overlap_begin)(float *g, size_t n, size_t bucket);
    void (*overlap_ready)(void *ctx, size_t lo, size_t hi);
    /* AdamW step t (1-based) on [0,n): g scaled by grad_scale first (clipping), decay (host, (n,) or
     * NULL = everywhere) selects weight decay, torch semantics */
    void (*adamw)(float *p, float *g, float *m, float *v, const uint8_t *decay, size_t n, float lr,
                  float grad_scale, const OptimCfg *o, int t);
    /* ZeRO-1: rank r's updated slice [displs[r], +counts[r]) of p (n) to every rank, in place */
    void (*params_allgather)(float *p, size_t n, const int *counts, const int *displs);
} TrainOps;
extern const TrainOps train_ops_cpu;
#ifdef QUORUM_HAVE_CUDA
extern const TrainOps train_ops_cuda;
#endif

typedef struct TrainModel TrainModel;
struct TrainModel {
    float *params, *grads; /* flat fp32, n_params each (memory of ops); grads accumulate across backward calls */
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
    /* where params and grads live and how the trainer updates them; NULL = train_ops_cpu */
    const TrainOps *ops;
    /* Called by the trainer after it wrote params (each optimizer step, a checkpoint load): refreshes what is
     * derived from them (mixed precision: the bf16 shadow the GEMMs read, quorum/model.h). NULL = nothing. */
    void (*params_changed)(TrainModel *m);
    /* Sets (ready non-NULL) or removes the model's grad-ready hook (quorum/model.h model_set_grad_ready_hook);
     * NULL = the model cannot report (no overlap). */
    void (*set_grad_ready)(TrainModel *m, void (*ready)(void *ctx, size_t lo, size_t hi), void *ctx);
    DType precision;       /* DT_F32, or DT_BF16: GEMMs read a bf16 shadow of the fp32 params (run.c sets it) */
    /* or NULL: called before the forward of micro-batch `micro` (0-based, < grad_accum) of optimizer step `step`
     * (0-based), so a model with randomness (LoRA dropout) seeds it from the step, not from a call count, and a
     * resumed run draws what the uninterrupted one would */
    void (*micro_begin)(TrainModel *m, int step, int micro);
    void *impl;
};


typedef enum { OBJ_DPO = 0, OBJ_BT = 1 } Objective;

/* LoRA (Hu et al. 2021) on a DPO policy, PEFT semantics: the adapters live in the model stage (quorum/model.h
 * model_lora_attach): each targeted weight W0 [out,in] computes y = x W0^T + (alpha/r) (drop(x) A^T) B^T inside
 * the model's linear, A [r,in] initialized as PEFT does (U(-1/sqrt(in), 1/sqrt(in))), B [out,r] zeros, so training
 * starts at the base model, which with the adapters off is also the DPO reference (no second copy). The base is
 * frozen: no base weight gradient is ever computed or stored. Targets are module names matched against weight
 * names "<...>.<target>.weight" (Llama family: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj; GPT-2:
 * c_attn c_proj c_fc). Only the adapters are trained, reduced, checkpointed and held in AdamW state, on the
 * model's backend (CPU or CUDA: the trainer's TrainOps table of that backend works on the adapter buffers).
 * Verified where: CPU = float64 torch replay (train.lora_torch, dropout included) and model.lora.* (frozen base by
 * op count, finite differences); CUDA = compiled in CI (kernels/pointwise.cu axpy_cols_cuda, dropout_forward_cuda)
 * and covered by GPU-only tests not yet run on a GPU (none lent so far): gpu.parity (the two ops vs cpu, same masks),
 * gpu.model_lora.* (model.lora's checks on cuda), gpu.dpo_backends (LoRA DPO on cuda vs cpu, 1 and 2 ranks).
 * lora_dropout p: nn.Dropout(p) on the adapter input during training steps only (not for the reference
 * log-probs, evaluation or export). Masks: micro-batch `micro` of step `step` on rank `rank` uses seed
 *     S = rng_counter_u64(seed ^ 0x1d70, rank << 40 | step << 16 | micro)      (quorum/rng.h)
 * and site k (its index in the tensor table's order = the PEFT export's order) the mask of ops.h dropout_forward
 * with seed rng_counter_u64(S, k) over its (B*T, in) input. So a resume is exact, masks depend on the rank count
 * (as data-parallel PEFT's do), and a test replays them. Exports: <out>/final = the merged full weights (an
 * ordinary HF checkpoint), <out>/adapter = a PEFT folder (adapter_config.json + adapter_model.safetensors,
 * tensors base_model.model.<module>.lora_A.weight / lora_B.weight, fan_in_fan_out for GPT-2's Conv1D). */
typedef struct {
    int r;                /* rank; 0 = LoRA off (full fine-tuning) */
    float alpha;          /* scale = alpha / r (default 32) */
    float dropout;        /* lora_dropout in [0, 1) */
    char targets[256];    /* comma-separated module names */
} LoraCfg;

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
    int no_overlap;             /* 1: post the gradient buckets after the backward, not during it (benchmarks) */
    int quiet;                  /* no per-step stdout lines */
    LoraCfg lora;               /* OBJ_DPO: r > 0 trains adapters only */
    /* --precision: DT_F32 (default) or DT_BF16 = bf16 + fp32 master (quorum/model.h model_set_precision:
     * what is bf16 and what stays fp32); params, grads, AdamW moments (ZeRO-1 sharded) and checkpoints stay fp32 */
    DType precision;
    /* --grad-reduce: DT_F32 (default) or DT_BF16 = each rank's gradient is rounded to bf16 for the wire (half
     * the bytes); see TrainOps.grads_allreduce for the exact arithmetic */
    DType grad_reduce;
    int packed;                 /* OBJ_DPO: each micro-batch's policy (and reference) forward runs packed, a pair's
                                   common prompt once (quorum/model.h model_logprobs_packed); equal to the padded
                                   forward within fp32 rounding. Default 0: see README (Packed DPO) */
    int recompute;              /* activation recomputation per block (quorum/model.h model_set_recompute):
                                   bit-identical gradients, less activation memory, one more layer forward */
} TrainCfg;

void train_cfg_defaults(TrainCfg *c);

/* LoRA (src/train/lora.c). lora_check: 0, or -1 with the reason in why. lora_wrap: attaches adapters to `base`
 * (a train_model_open policy, which must outlive it; its grads become NULL: frozen) and returns a TrainModel whose
 * params are the adapters, on base's backend and ops; 0 or -1 after one line. lora_merge_into_base writes
 * W0 + s B A into the base's weights and turns the adapters off (before exporting it).
 * lora_export_peft writes <out>/adapter (temp name, then renamed); base_dir is recorded in its config. */
int lora_check(const LoraCfg *c, char *why, size_t n);
int lora_wrap(TrainModel *out, TrainModel *base, const LoraCfg *c, uint64_t seed);
void lora_merge_into_base(TrainModel *lora);
int lora_export_peft(TrainModel *lora, const char *base_dir, const char *out);
void lora_close(TrainModel *lora);

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
 * chosen, rejected float32[n], attr key = FNV-1a of the token data and the params) and reuses a cache
 * whose key matches. Values are completion log-prob SUMS; dpo_loss normalizes by length where a loss
 * says so. 0 or -1. */
int ref_logps_compute(TrainModel *m, TokPairs *data, int batch, const char *path);


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
