/* model_internal.h - the Model struct shared by model.c (config, tensor table, load/save) and
 * model_forward.c (activations, forward, backward). Not a public header. */
#ifndef QUORUM_MODEL_INTERNAL_H
#define QUORUM_MODEL_INTERNAL_H

#include "quorum/model.h"
#include "quorum/safetensors.h"

#include <cjson/cJSON.h>

/* Offsets (floats) of one layer's tensors into params/grads; SIZE_MAX when the tensor is absent. */
typedef struct {
    size_t ln1_w, ln1_b, qkv_w, qkv_b, o_w, o_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b;
    size_t qn_w, kn_w; /* Qwen3 q_norm / k_norm (HD) */
    size_t pa_w, pf_w; /* Gemma-2 post_attention_layernorm / post_feedforward_layernorm (ln2 = pre_feedforward) */
} LayerOffsets;

/* One step of a reward head program (model_head.c): out = inp @ w^T + b, or out = relu(inp). */
enum { HOP_LINEAR, HOP_RELU };
typedef struct {
    int op;
    size_t w, b;  /* param offsets (b may be OFF_NONE) */
    int in, out;  /* widths */
} HeadStep;
#define HEAD_MAX_STEPS 8

/* Activation buffers, carved from one allocation for the current (B,T,M). Layer arrays have
 * n_layer entries when grads are enabled, else 1 (reused). */
typedef struct {
    float *enc;                                     /* (N,C) embedding output = input of layer 0 */
    float *ln1, *ln1_mean, *ln1_rstd;               /* (L,N,C) (L,N) (L,N) */
    float *qkv;                                     /* (L,N,QKV) post-RoPE */
    float *att;                                     /* (L,B,NH,T,T) the T^2 path's probabilities */
    float *alse;                                    /* (L,N,NH) flash path: attention logsumexp (training) */
    float *atty;                                    /* (L,N,NH*HD) */
    float *res2;                                    /* (L,N,C) */
    float *ln2, *ln2_mean, *ln2_rstd;               /* (L,N,C) (L,N) (L,N) */
    float *fch;                                     /* (L,N,FC) FC = F (gelu) or 2F (swiglu) */
    float *fca;                                     /* (L,N,F) */
    float *res3;                                    /* (L,N,C) output of each layer */
    float *proj;                                    /* (N,C) scratch: o_proj / down_proj output */
    float *g, *gn, *g_mean, *g_rstd;                /* (M,C) (M,C) (M) (M) gathered rows, final norm */
    float *logits;                                  /* (M,V) or (M,1) reward */
    float *logp, *lse;                              /* (M) (M) */
    float *rope_cos, *rope_sin;                     /* (T,HD/2) */
    float *rope_cos_l, *rope_sin_l;                 /* (T,HD/2) Gemma-3 sliding layers' table, else none */
    float *qkr, *qk_rstd;                           /* (L,N,QKV) (L,N,NH+NKV) Qwen3: qkv before q/k norm */
    float *po1, *po1_rstd, *po2, *po2_rstd;         /* (L,N,C) (L,N) x2 Gemma-2: o_proj / down_proj outputs */
    float *hact;                                    /* (M,HW) reward head program intermediates */
    /* backward scratch (grads enabled only) */
    float *dres, *dln, *dqkv, *datt, *datty, *dfch, *dfca; /* (N,C) (N,C) (N,QKV) (B,NH,T,T) (N,NH*HD) (N,FC) (N,F) */
    float *dg, *dgn, *dlogp;                        /* (M,C) (M,C) (M) */
    float *dqkr, *dpo, *dhact, *dlogits;            /* (N,QKV) (N,C) (M,HW) (M,V) only when used */
    int *ids, *lens, *rows, *targets;               /* (N) (B) (M) (M) backend ints */
    int *segs, *pos;                                /* (S,4) attention segments (ops.h attention_varlen_forward),
                                                       (N) positions of a packed stream */
} Acts;

struct Model {
    ModelConfig cfg;
    const Backend *be;
    cJSON *config_json; /* kept to write config.json back */
    int n_tensors;
    ModelTensor *tensors;
    size_t n_params;         /* elements of params (and grads) */
    float *params, *grads;   /* grads: NULL until training asks for them */
    size_t n_wbf;            /* elements of wbf */
    uint16_t *wbf;           /* bf16 trunk matrices (inference load of a bf16 checkpoint), else NULL */
    DType wdtype;            /* DT_BF16 when the trunk matrices live in wbf */
    uint16_t *wshadow;       /* mixed precision (model_set_precision): bf16 copy of params, same offsets, else NULL */
    void (*grad_ready)(void *ctx, size_t lo, size_t hi); /* model_set_grad_ready_hook */
    void *grad_ready_ctx;
    int *tensor_stage;       /* (n_tensors) backward stage that finalizes each tensor's gradient (grad_ready_report) */
    int split;               /* table building: 2-D tensors go to wbf */
    size_t wte, wpe, lnf_w, lnf_b, head_w; /* head_w == wte when tied */
    LayerOffsets *layers;
    size_t norm_lo, norm_hi; /* Gemma: every RMSNorm weight lives in params[norm_lo, norm_hi) ... */
    float *norm1p;           /* ... and norm1p (backend) holds 1 + w for them, refreshed each forward */
    int n_hsteps;            /* reward head program */
    HeadStep hsteps[HEAD_MAX_STEPS];
    size_t armo_reg, armo_T, armo_scale, armo_w[HEAD_MAX_STEPS], armo_b[HEAD_MAX_STEPS]; /* ArmoRM head */
    int64_t armo_missing;    /* sequences gated at their last token (no gating pattern) */
    int grad_enabled;
    int recompute;           /* model_set_recompute: one slot of layer activations, each layer rerun in backward */
    struct ModelLora *lora;  /* model_lora.c: adapters; non-NULL = the base is frozen (no base gradients) */
    /* activations */
    float *act_mem;
    int *act_int;
    size_t act_cap, act_int_cap;
    Acts a;
    int rope_T;       /* T the RoPE tables were built for */
    /* last forward */
    int last;         /* 0 none, 1 reward, 2 logprobs */
    int B, T, M, S;
    int pad_rows;     /* the (B,T) batch has padded rows (flash attention leaves them to be zeroed) */
    int flash;        /* attention of the current forward: 1 attention_varlen_* over a.segs, 0 the T^2 ops */
    int packed;       /* the current forward is a packed stream (forward_packed): positions a.pos, rows by row_seq */
    int *row_seq;     /* (2M) host, packed forwards: the sequence(s) gathered row m serves (-1 none); a shared
                         prefix row predicting a token both sequences of a pair mask serves both */
    int *rows_host;   /* (M) */
    float *tok_logp;  /* (B,T) host */
    size_t tok_cap;
};

#define OFF_NONE ((size_t)-1)

/* model_forward.c: a packed stream of N tokens (host ids, positions, attention segments, rows to score, LM targets
 * or NULL) through the trunk, the final norm and the head (a.logits (M,...)); flash attention. With grads enabled
 * model_backward differentiates it once the caller has filled m->row_seq and set m->last. */
void forward_packed(Model *m, const int *ids, const int *pos, int N, const int *segs, int S, const int *rows, int M,
                    const int *targets);

/* model.c: allocates and zeroes the gradient buffer when absent */
void grads_ensure(Model *m);
/* model.c: with a grad-ready hook, reports the tensors whose gradient is final after backward stage s: layer l's
 * tensors after stage l, the final norm + head (+ reward head) after stage n_layer (the first to run), the
 * embeddings after stage n_layer + 1 (the last). */
void grad_ready_report(Model *m, int stage);

/* model_lora.c: the adapter hooks of linear_forward / linear_backward for the linear whose weight is at param
 * offset w (no-ops unless an adapter sits in it and the mode is not OFF); lora_free at model_free */
void lora_linear_forward(Model *m, float *out, const float *inp, size_t w, int N, int C, int OC);
void lora_linear_backward(Model *m, float *dinp, const float *dout, const float *inp, size_t w, int N, int C, int OC);
void lora_zero_grad(Model *m);
void lora_free(Model *m);

/* model_head.c: reward head programs */
int head_detect(Model *m, const SafeTensors *st, const char *cfg_path); /* sets cfg.reward_head */
void head_table_build(Model *m, size_t (*add)(Model *, const char *, int64_t, int64_t, int));
size_t head_width(const Model *m);   /* floats per row of a.hact */
int head_config_parse(ModelConfig *c, const cJSON *j, const char *path); /* ArmoRM keys; 0 or -1 (one line) */
/* ArmoRM: rows[b] = b*T + the last start of the gating pattern in ids[b, <lens[b]] (the last token when absent,
 * warned once per model) */
void head_gate_rows(Model *m, const int32_t *ids, const int *lens, int B, int T, int *rows);
void rhead_forward(Model *m, int M);  /* a.gn (M,C) -> a.logits (M,1) */
void rhead_backward(Model *m, int M); /* a.dlogp (M,1) -> a.dgn (M,C) +=, head grads += */
/* 1 when the backend has every optional op the config needs (quorum/ops.h), else 0 and *missing names one */
int model_backend_supports(const ModelConfig *c, const Backend *be, const char **missing);

#endif
