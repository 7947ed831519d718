/* train_opts.c - the training options shared by dpo and rm-train (the parser: quorum/opts.h). */
#include "internal.h"
#include "quorum/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int train_opts(Opt *o, TrainCfg *c, TrainOptStrings *s) {
    snprintf(s->loss, sizeof s->loss, "sigmoid");
    snprintf(s->schedule, sizeof s->schedule, "constant");
    snprintf(s->precision, sizeof s->precision, "fp32");
    snprintf(s->grad_reduce, sizeof s->grad_reduce, "fp32");
    const Opt t[] = {
        {"steps", 'i', &c->steps, 0, "optimizer steps (default 100)"},
        {"batch-size", 'i', &c->batch_size, 0, "GLOBAL pairs per optimizer step (default 8)"},
        {"grad-accum", 'i', &c->grad_accum, 0, "micro-batches per rank per step (default 1)"},
        {"lr", 'f', &c->optim.lr, 0, "peak learning rate (default 5e-6)"},
        {"weight-decay", 'f', &c->optim.weight_decay, 0, "AdamW decoupled weight decay (default 0)"},
        {"grad-clip", 'f', &c->optim.grad_clip, 0, "global-norm clip, 0 = off (default 1)"},
        {"warmup-steps", 'i', &c->optim.warmup_steps, 0, "linear warmup steps (default 0)"},
        {"schedule", 's', s->schedule, sizeof s->schedule, "constant | cosine (default constant)"},
        {"zero1", 'b', &c->zero1, 0, "shard AdamW state over ranks (ZeRO-1)"},
        {"checkpoint-every", 'i', &c->checkpoint_every, 0, "steps between checkpoints (default 50)"},
        {"seed", 'u', &c->seed, 0, "data order seed (default 1)"},
        {"quiet", 'b', &c->quiet, 0, "no per-step lines on stdout (metrics.jsonl still written)"},
        {"bucket-floats", 'u', &c->bucket_floats, 0, "gradient allreduce bucket, floats (default 1048576)"},
        {"no-overlap", 'b', &c->no_overlap, 0, "reduce gradients after the backward, not during it (benchmarks)"},
        {"precision", 's', s->precision, sizeof s->precision,
         "fp32 (default) | bf16: GEMMs read a bf16 copy of the fp32 master weights"},
        {"grad-reduce", 's', s->grad_reduce, sizeof s->grad_reduce,
         "fp32 (default) | bf16: gradients cross ranks rounded to bf16 (half the bytes)"},
        {"recompute", 'b', &c->recompute, 0, "activation recomputation per block: keep each layer's input, rerun "
         "the layer in backward (same gradients, less memory)"},
    };
    int n = (int)(sizeof t / sizeof *t);
    memcpy(o, t, sizeof t);
    return n;
}

int train_dtype_parse(const char *name, DType *out) {
    if (!strcmp(name, "fp32")) *out = DT_F32;
    else if (!strcmp(name, "bf16")) *out = DT_BF16;
    else return -1;
    return 0;
}

int train_opts_finish(const char *cmd, TrainCfg *c, const TrainOptStrings *s) {
    if (dpo_loss_parse(s->loss, &c->dpo.type) != 0) {
        fprintf(stderr, "quorum: error: %s: --loss: unknown loss \"%s\"; expected one of:", cmd, s->loss);
        for (int i = 0; i < DPO_N_LOSSES; i++) fprintf(stderr, " %s", dpo_loss_name((DpoLoss)i));
        fprintf(stderr, "\n");
        return 2;
    }
    if (strcmp(s->schedule, "constant") && strcmp(s->schedule, "cosine")) {
        fprintf(stderr, "quorum: error: %s: --schedule: expected constant|cosine\n", cmd);
        return 2;
    }
    c->optim.cosine = !strcmp(s->schedule, "cosine");
    const char *bad = train_dtype_parse(s->precision, &c->precision) ? "precision"
                      : train_dtype_parse(s->grad_reduce, &c->grad_reduce) ? "grad-reduce" : NULL;
    if (bad) {
        fprintf(stderr, "quorum: error: %s: --%s %s: expected fp32 | bf16\n", cmd, bad,
                bad[0] == 'p' ? s->precision : s->grad_reduce);
        return 2;
    }
    if (c->steps < 0 || c->batch_size < 1 || c->grad_accum < 1 || c->optim.lr < 0) {
        fprintf(stderr, "quorum: error: %s: need steps >= 0, batch-size >= 1, grad-accum >= 1, lr >= 0\n", cmd);
        return 2;
    }
    char why[256];
    if (c->objective == OBJ_DPO &&
        (dpo_loss_check(&c->dpo, why, sizeof why) != 0 || lora_check(&c->lora, why, sizeof why) != 0)) {
        fprintf(stderr, "quorum: error: %s: %s\n", cmd, why);
        return 2;
    }
    return 0;
}
