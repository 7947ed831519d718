/* internal.h - private to src/train: trainer state on disk (checkpoint.c), the training options (train_opts.c),
 * small file helpers. */
#ifndef QUORUM_TRAIN_INTERNAL_H
#define QUORUM_TRAIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "quorum/opts.h"
#include "quorum/rng.h"
#include "quorum/train.h"

typedef struct {
    int step;          /* optimizer steps done */
    int64_t epoch;     /* data epoch of the next batch */
    int64_t pos;       /* position of the next pair in that epoch's permutation */
    Rng rng;           /* data RNG at the start of `epoch` (reshuffling from it rebuilds the order) */
    uint64_t seed;
    int world;         /* informational: ranks of the run that wrote it */
} CkptState;

/* Rank 0 only. Full (gathered) params and AdamW moments. 0 or -1. */
int ckpt_write(const char *out, const CkptState *s, const float *params, const float *m, const float *v, size_t n);
/* 1 when there is none, 0 when read, -1 after a one-line error. m/v may be NULL. */
int ckpt_read(const char *out, CkptState *s, float *params, float *m, float *v, size_t n);
int ckpt_exists(const char *out);

/* Copies the tokenizer files that exist in src (tokenizer.json, tokenizer_config.json, ...) to dst. */
int train_copy_tokenizer(const char *src, const char *dst);

/* The model.h adapter (model_adapter.c): loads an HF folder as a TrainModel on backend_auto()'s backend
 * (the CUDA one when a GPU is bound to this rank, LoRA or not); want_reward selects (and checks) the head. 0 or -1. */
int train_model_open(TrainModel *tm, const char *dir, int want_reward);
void train_model_close(TrainModel *tm);
/* Mixed precision of an open model (quorum/model.h model_set_precision): DT_BF16 allocates the bf16 shadow and
 * sets tm->params_changed to refresh it; DT_F32 drops it. 0 or -1 (one line). */
int train_model_precision(TrainModel *tm, DType p);
/* Policy forwards of tm (a train_model_open causal LM) run packed: the 2b rows of a batch_build micro-batch go
 * through model_logprobs_packed with pairs (i, i+b) sharing their common prefix, backward unchanged. 0, or -1
 * after one line when the model's backend lacks the flash attention ops it needs. */
int train_model_set_packed(TrainModel *tm);
/* tm keeps only each layer's input and reruns the layer in backward (model_set_recompute). */
void train_model_set_recompute(TrainModel *tm);
/* Rank 0: <out>/final = model_save + the tokenizer files of src_dir, renamed into place. 0 or -1. */
int train_export(TrainModel *tm, const char *src_dir, const char *out);

/* Pairs of corpus folders (comma-separated), rendered with model_dir's chat template (data.c). */
typedef struct {
    const char *corpus_dirs, *model_dir;
    int max_length, max_prompt_length;
    int slice_k, slice_K; /* keep pairs whose running index g has g % K == k (K <= 1: all) */
} PairsLoadCfg;
int pairs_load(TokPairs *out, const PairsLoadCfg *c);

/* The training options shared by dpo and rm-train: writes them to o[0..n) and returns n. */
typedef struct { char loss[16], schedule[16], precision[8], grad_reduce[8]; } TrainOptStrings;
int train_opts(Opt *o, TrainCfg *c, TrainOptStrings *s);
/* "fp32" -> DT_F32, "bf16" -> DT_BF16 (--precision, --grad-reduce, the job's dpo.precision / dpo.grad_reduce):
 * 0, or -1 for anything else. */
int train_dtype_parse(const char *name, DType *out);
/* Converts the string options and checks ranges. 0 or 2 after one line. */
int train_opts_finish(const char *cmd, TrainCfg *c, const TrainOptStrings *s);

#endif
