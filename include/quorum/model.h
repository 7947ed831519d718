/*
 * quorum/model.h - Hugging Face decoder transformers on a Backend (quorum/ops.h): reward models for
 * committee scoring, causal LMs for DPO.
 *
 * Supported config.json "architectures" (first entry):
 *   GPT2LMHeadModel / GPT2ForSequenceClassification       LayerNorm, learned positions, gelu_new,
 *                                                         Conv1D weights ([in,out] in the file: transposed
 *                                                         on load and back on save), tied lm_head
 *   LlamaForCausalLM / LlamaForSequenceClassification     RMSNorm, RoPE split-half (rope_theta, rope_scaling
 *   MistralForCausalLM / MistralForSequenceClassification   type "llama3"), GQA (num_key_value_heads), SwiGLU,
 *   Qwen2ForCausalLM / Qwen2ForSequenceClassification       tie_word_embeddings; Qwen2 adds q/k/v biases,
 *   Qwen3ForCausalLM / Qwen3ForSequenceClassification       Llama/Qwen3 honour attention_bias, Llama mlp_bias;
 *                                                         Qwen3 adds q_norm/k_norm (RMSNorm per head, before RoPE)
 *   Gemma2ForCausalLM / Gemma2ForSequenceClassification   embeddings * sqrt(hidden), RMSNorm (1 + w), norms before
 *                                                         AND after attention and MLP, GeGLU (gelu tanh), scale
 *                                                         query_pre_attn_scalar^-0.5, attention and final logit
 *                                                         softcapping, sliding window on even layers
 *   Gemma3ForCausalLM / Gemma3TextForSequenceClassification: as Gemma-2 plus q_norm/k_norm (1 + w), no softcapping
 *                                                         by default, sliding layers (5 of 6) with their own RoPE
 *                                                         base rope_local_base_freq, full layers rope_theta (+ linear)
 * RoPE: rope_theta + rope_scaling (v4 configs) or rope_parameters (v5 configs; per-layer-type entries must
 * agree); rope types "default", "linear" and "llama3". Sliding windows (Mistral, Qwen2/3 use_sliding_window with
 * max_window_layers, Gemma-2, or an explicit layer_types list): key t2 is visible to query t when
 * t - sliding_window < t2 <= t.
 * *ForSequenceClassification is a reward model: reward = a head program (src/model/model_head.c: the linear
 * `score.weight` [1,C], or the MLP score.0 / ReLU / score.2 of INF-ORM, chosen by the tensor names in the
 * checkpoint; num_labels must be 1) applied to the final hidden state at the last non-pad token.
 * LlamaForRewardModelWithGating (ArmoRM) is a reward model too: 19 objectives from the last token, mixed by a
 * gating MLP on the hidden state at the last gating token pattern; scoring only (no backward).
 * *ForCausalLM is a policy.
 *
 * Memory: a model loaded for training (model_load) keeps ALL parameters in ONE contiguous fp32 backend buffer
 * and all gradients in ONE buffer of the same layout (allocated at the first model_grads / model_zero_grad /
 * model_backward, never for scoring), so an optimizer or an MPI allreduce sees flat arrays. A model loaded
 * for inference (model_load_ex, .inference = 1) from a checkpoint whose trunk matrices (embeddings, q/k/v/o,
 * MLP, untied lm_head) are all BF16 keeps those in a second, bf16 buffer as stored (half the memory of fp32;
 * the ops compute in fp32, quorum/ops.h); norms, biases and the reward head stay fp32 in the first. Each
 * tensor carries its dtype (ModelTensor.dtype). The tensor table maps HF names to offsets in these buffers.
 * Fused layouts: q_proj,k_proj,v_proj are adjacent (one matmul, GPT-2's c_attn
 * layout), gate_proj,up_proj are adjacent (one matmul feeding SwiGLU).
 * Activations are sized on demand for the largest (B,T) seen. Batches are right-padded (ids[b,t] for
 * t >= lens[b] are ignored but must be valid ids in [0,V), e.g. 0); T is the padded length, so sort by
 * length to keep padding cheap. Attention skips padded queries; the LM head only computes logits at the
 * positions that predict a masked (completion) token, and the reward head only at the last token.
 * Attention is flash-style (quorum/ops.h attention_varlen_*: one segment per sequence, no (T,T) buffer), training
 * included when the backend has the backward (the forward saves an (L,N,heads) logsumexp); the environment
 * variable QUORUM_ATTENTION=t2 makes training use the T^2 ops (probabilities saved), the oracle of the tests.
 *
 * Errors: bad config / checkpoint -> one line naming the file and the key or tensor, return -1.
 */
#ifndef QUORUM_MODEL_H
#define QUORUM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "quorum/ops.h"

typedef enum { ARCH_GPT2, ARCH_LLAMA, ARCH_QWEN2, ARCH_MISTRAL, ARCH_QWEN3, ARCH_GEMMA2, ARCH_GEMMA3 } ModelArch;
typedef enum { ACT_GELU_NEW, ACT_SWIGLU, ACT_GEGLU } ModelAct; /* GPT-2 MLP, silu GLU, gelu-tanh GLU */
typedef enum { RHEAD_LINEAR, RHEAD_MLP, RHEAD_ARMO } RewardHeadKind; /* see model_head.c */
#define MODEL_MAX_LAYERS 512
typedef enum { HEAD_LM, HEAD_REWARD } ModelHead;

typedef struct {
    char architecture[96]; /* as in config.json, e.g. "LlamaForSequenceClassification" */
    ModelArch arch;
    ModelHead head;
    int vocab_size, max_pos, n_layer, d_model, n_head, n_kv_head, head_dim, d_ff;
    float norm_eps;
    int tied;                      /* lm_head.weight is the token embedding */
    int qkv_bias, o_bias, mlp_bias; /* GPT-2: all three (and LayerNorm biases) */
    float rope_theta;              /* RoPE models only */
    int rope_llama3;               /* rope_scaling.rope_type == "llama3" */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    float rope_linear;             /* rope_type "linear": positions / factor (0 = none) */
    float rope_local_theta;        /* Gemma-3: the sliding layers' RoPE base (default type, no scaling); 0 = one table */
    int sliding_window;            /* 0 = none; the layers it applies to are marked in layer_window */
    unsigned char layer_window[MODEL_MAX_LAYERS]; /* 1 = layer l attends within sliding_window */
    ModelAct act;
    int qk_norm;                   /* Qwen3 */
    int norm_plus_one;             /* Gemma: RMSNorm weight is (1 + w) */
    int post_norms;                /* Gemma-2: post_attention_layernorm / pre_ and post_feedforward_layernorm */
    float embed_scale;             /* embeddings multiplied by it (Gemma: sqrt(hidden) in fp32); 0 = none */
    float attn_scale;              /* q.k scale: 1/sqrt(head_dim), Gemma-2 query_pre_attn_scalar^-0.5 */
    float attn_softcap, final_softcap; /* Gemma-2 tanh softcapping of attention scores / LM logits; 0 = none */
    RewardHeadKind reward_head;    /* from the checkpoint's tensor names at model_load (RHEAD_LINEAR before),
                                      RHEAD_ARMO from the architecture */
    struct {                       /* ArmoRM (LlamaForRewardModelWithGating) */
        int objectives, hidden, n_hidden, pattern_len;
        float temperature;
        int32_t pattern[8];        /* gating token pattern (default Llama-3 <|eot_id|> + assistant header) */
    } armo;
} ModelConfig;

typedef struct {
    char *name;       /* HF name as saved, e.g. "model.layers.0.self_attn.q_proj.weight" */
    int ndim;
    int64_t shape[2]; /* in OUR layout (nn.Linear [out,in]); Conv1D tensors are [in,out] in the file */
    size_t offset;    /* in elements, into the params / grads buffers (DT_F32) or the bf16 weights (DT_BF16) */
    DType dtype;      /* storage in memory (quorum/ops.h): DT_BF16 only after an inference load of a bf16 file */
    int transposed;   /* stored transposed in the file (GPT-2 Conv1D) */
} ModelTensor;

typedef struct Model Model;

/* Loads dir/config.json + safetensors (single or sharded) onto backend `be`, every weight in fp32, ready to
 * train. 0 or -1 (one line). */
int model_load(Model **m, const char *dir, const Backend *be);
typedef struct {
    int inference; /* 1: scoring only. Weights stay as stored when the trunk matrices are all BF16 (and `be`
                      has the bf16 ops), grads are disabled (model_set_grad_enabled(m, 0)); enabling grads
                      later converts every weight to fp32 first. 0: as model_load. */
} ModelLoadOpts;
int model_load_ex(Model **m, const char *dir, const Backend *be, const ModelLoadOpts *opts);
void model_free(Model *m);
/* Writes dir/config.json + dir/model.safetensors (F32, HF-loadable; Conv1D transposed back). The folder
 * is built as <dir>.tmp.<pid> and renamed over dir, so a crash never leaves a half-written model. */
int model_save(const Model *m, const char *dir);
/* As model_save, splitting the weights into shards of at most max_shard_bytes (+ index json). */
int model_save_sharded(const Model *m, const char *dir, size_t max_shard_bytes);

/* Reward model forward: reward[b] = score(h[b, lens[b]-1]). ids (B,T) host, lens (B) host, 1 <= lens[b] <= T. */
int model_reward(Model *m, const int32_t *ids, const int *lens, int B, int T, float *reward /*[B]*/);
/* Packed reward scoring of n sequences of any lengths (seqs[s] host, lens[s] >= 1 tokens): sorted by token count
 * and packed into forwards of at most opts->token_budget tokens (a larger one runs alone), back to back with no
 * padding, attention flash-style per sequence. With opts->share_pairs, sequences 2i and 2i+1 (a pair's chosen
 * and rejected) run their longest common token prefix once, capped so each keeps at least its last token,
 * and both continue from its K/V: sharing follows the rendered tokens, so it is exact whatever the template or
 * truncation did (a left-truncated pair whose cuts differ simply shares nothing). reward[s] in input order;
 * equal to model_reward within fp32 rounding. Reward models on a backend with attention_varlen_forward, not
 * ArmoRM; a model loaded for training is switched to inference (model_set_grad_enabled(m, 0)). */
typedef struct {
    int token_budget; /* tokens per forward (<= 0: 8192) */
    int share_pairs;  /* 1: pairs (2i, 2i+1) share their common prefix */
    int pair_stride;  /* > 0: the pairs are (i, i + pair_stride) instead (tokpairs.h batch_build's chosen-then-
                         rejected rows: pair_stride = n/2); 0: (2i, 2i+1) */
} ModelPackOpts;
typedef struct {
    int64_t forwards, tokens, shared_tokens; /* totals of the last packed call: tokens run, tokens saved */
} ModelPackStats;
int model_reward_packed(Model *m, const int32_t *const *seqs, const int *lens, int n, const ModelPackOpts *opts,
                        float *reward, ModelPackStats *stats /* or NULL */);
/* Packed causal-LM log-probs, model_reward_packed's layout for a policy (DPO's prefix sharing): seq_logp[s] =
 * sum_t masks[s][t] * log p(seqs[s][t] | seqs[s][<t]) over 1 <= t < lens[s] (masks[s] host, lens[s] entries), as
 * model_logprobs. Positions restart at 0 per sequence (RoPE tables and GPT-2 wpe by each row's position). With
 * opts->share_pairs, sequences 2i and 2i+1 run their longest common token prefix LESS ONE token once: then every
 * shared row predicts the same next token for both, and a masked one counts for each sequence masking it (the row
 * before the first difference predicts different tokens, so each sequence keeps its own). Grads enabled: all n
 * sequences run as ONE forward (token_budget ignored) that model_backward(m, dseq[n]) then differentiates (shared
 * rows get both sequences' gradients); equal to model_logprobs + model_backward within fp32 rounding. Grads
 * disabled: forwards of token_budget tokens, as model_reward_packed. Needs attention_varlen_forward (+ _backward
 * with grads) on the backend; model_token_logprobs is not filled. 0, or -1 after one line. */
int model_logprobs_packed(Model *m, const int32_t *const *seqs, const int *lens, const uint8_t *const *masks, int n,
                          const ModelPackOpts *opts, float *seq_logp, ModelPackStats *stats /* or NULL */);
/* Causal LM forward: seq_logp[b] = sum_t mask[b,t] * log p(ids[b,t] | ids[b,<t]). mask (B,T) host marks
 * completion targets; positions t == 0 or t >= lens[b] are ignored. -1 on a reward model. */
int model_logprobs(Model *m, const int32_t *ids, const int *lens, const uint8_t *mask, int B, int T,
                   float *seq_logp /*[B]*/);
/* Per-token log-probs of the last model_logprobs call, host (B,T): logp of ids[b,t] at masked positions,
 * 0 elsewhere. Valid until the next forward. */
const float *model_token_logprobs(const Model *m);
/* Backward of the last forward (reward, logprobs or logprobs_packed) given dLoss/dreward[b] or dLoss/dseq_logp[b] (host).
 * ACCUMULATES into the grad buffer. One backward per forward. -1 when there is no forward to
 * differentiate (or grads are disabled). */
int model_backward(Model *m, const float *dseq /*[B]*/);
void model_zero_grad(Model *m);
/* 0 = inference only: activations of one layer are reused across layers (memory / L) and
 * model_backward refuses. Default 1 (model_load) or 0 (model_load_ex inference). 1 on a model holding bf16
 * weights converts them to fp32 first (the tensor table's offsets change: re-read model_tensors). */
void model_set_grad_enabled(Model *m, int on);

/* Mixed-precision training (bf16 + fp32 master), torch.autocast(bfloat16)'s split:
 *  bf16: the weights every GEMM of linear_forward / linear_backward reads (q/k/v/o, MLP, LM head incl. a tied
 *        one) come from a bf16 shadow of the params buffer (a copy of all of it, same offsets, rounded to
 *        nearest even); on CUDA those GEMMs also round their activation operand (inp forward, dout backward)
 *        to bf16 (cuBLASLt, fp32 accumulate); the CPU twin keeps activations fp32 (widened bf16 weights).
 *  fp32: the master params (what the optimizer updates, checkpoints and exports), AdamW moments, grads (and
 *        their reduction unless asked otherwise), embeddings (a lookup, not a GEMM: it reads the fp32 master),
 *        norms, biases, attention and softmax, the reward head, the loss.
 * Gradients w.r.t. a bf16 weight flow straight into the fp32 grad of its master (straight-through). With LoRA
 * adapters attached the frozen base is read through the shadow and the adapters' own GEMMs stay fp32.
 * No loss scaling: bf16 has fp32's 8-bit exponent, so gradients do not underflow as fp16's 5-bit one does.
 * model_set_precision(m, DT_BF16) allocates and fills the shadow; DT_F32 frees it (the default). -1 (one line)
 * on a model holding bf16 weights from an inference load. model_refresh_shadow recasts it: call it after
 * anything writes params (an optimizer step, a checkpoint load); a no-op without a shadow. */
int model_set_precision(Model *m, DType gemm_weights);
void model_refresh_shadow(Model *m);

/* Overlapping the gradient reduction with the backward pass: with a hook set, model_backward calls
 * ready(ctx, lo, hi) for every parameter range [lo, hi) (offsets into model_grads, one tensor each) as soon as
 * the backward has written its last contribution to it: the final norm and the head right after the head's
 * backward, each layer's tensors right after that layer (last layer first), the embeddings (and a tied head)
 * at the end. Every tensor is reported once per backward, in an order that depends only on the architecture
 * (the same on every rank, so the hook may post collectives). On a GPU backend the reported gradients are
 * queued, not yet computed (stream order). ready NULL removes the hook. */
void model_set_grad_ready_hook(Model *m, void (*ready)(void *ctx, size_t lo, size_t hi), void *ctx);
/* Activation recomputation (per block) for long sequences: 1 = a training forward keeps only each layer's input
 * (its (L,N,C) outputs) and one slot of every other activation; model_backward reruns each layer's forward from its
 * input before differentiating it. Gradients are bit-identical to the stored-activation run (same ops on the same
 * inputs); activation memory drops by about the per-layer activations of L-1 layers; one extra forward per step.
 * Default 0. Takes effect at the next forward (the last one can no longer be differentiated). */
void model_set_recompute(Model *m, int on);
/* Bytes of activation memory currently held (backend memory; 0 before the first forward). */
size_t model_activation_bytes(const Model *m);

/* Accessors. params/grads are backend memory. model_n_params counts the fp32 buffer (every parameter unless
 * bf16 weights were kept); model_grads allocates the gradient buffer on first use. */
float *model_params(Model *m);
float *model_grads(Model *m);
size_t model_n_params(const Model *m);
const ModelConfig *model_config(const Model *m);
const ModelTensor *model_tensors(const Model *m, int *n);
const ModelTensor *model_find_tensor(const Model *m, const char *name);
const Backend *model_backend(const Model *m);

/* ---- LoRA adapters (Hu et al. 2021; src/model/model_lora.c), PEFT semantics ----
 * model_lora_attach freezes the base and adds, for each 2-D trunk weight W0 [out,in] named "<...>.<target>.weight"
 * (targets: comma-separated module names, e.g. q_proj,v_proj,down_proj; GPT-2: c_attn,c_proj,c_fc), an adapter
 * A [r,in], B [out,r] inside linear_forward / linear_backward:
 *     y = x W0^T (+ b) + s * (drop(x) A^T) B^T,   s = alpha / r
 * The trunk's fused matmuls (q;k;v, gate;up) stay fused: an adapter adds into its column slice of the output.
 * Backward gives dA, dB and dx through both paths; the base is frozen: no gradient of any base parameter is ever
 * computed (matmul / norm backward get NULL weight gradients, the embedding backward is skipped, no base grad
 * buffer exists: model_grads returns NULL). The adapter params and grads are each ONE flat backend buffer,
 * [A_0, B_0, A_1, B_1, ...] in tensor-table order (the PEFT export's order), so a trainer treats them as the
 * params. A is PEFT's init U(-1/sqrt(in), 1/sqrt(in)) from rng stream (seed, 0x10a) in that order, B = 0, so
 * the attached model starts equal to the base; with the adapters off the same weights are the DPO reference
 * model (no second copy). Dropout: nn.Dropout(p) on the adapter input in TRAIN mode only, the mask of site k
 * (its index in the table) in a forward with seed S is ops.h dropout_forward's with seed rng_counter_u64(S, k)
 * over the (N = B*T rows, in) input, padded rows included; backward regenerates it (nothing is stored).
 * fp32 weights only (a model loaded for training); causal LMs only. */
typedef struct {
    int r;               /* rank >= 1 */
    float alpha;         /* s = alpha / r */
    float dropout;       /* lora_dropout in [0, 1) */
    const char *targets; /* comma-separated module names */
    uint64_t seed;       /* A's init */
} ModelLoraCfg;
typedef struct {
    const char *name;    /* the base weight, e.g. "model.layers.0.self_attn.q_proj.weight" */
    int64_t out, in;     /* its shape in our layout [out,in] */
    size_t a, b;         /* offsets of A [r,in] and B [out,r] in the adapter buffers */
} ModelLoraSite;
typedef enum { MODEL_LORA_OFF = 0, MODEL_LORA_EVAL = 1, MODEL_LORA_TRAIN = 2 } ModelLoraMode;
/* 0, or -1 after one line (no target matches, bad r/alpha/dropout, a reward model, bf16 weights, already attached) */
int model_lora_attach(Model *m, const ModelLoraCfg *c);
/* OFF: the base alone (the reference model). EVAL: adapters, no dropout. TRAIN: adapters with dropout, masks
 * seeded by `seed` (a fresh one per forward; the next model_backward reuses it). Default after attach: EVAL. */
void model_lora_mode(Model *m, ModelLoraMode mode, uint64_t seed);
const ModelLoraSite *model_lora_sites(const Model *m, int *n); /* NULL, 0 without adapters */
float *model_lora_params(Model *m); /* backend memory, model_lora_n_params floats */
float *model_lora_grads(Model *m);  /* same layout; model_backward accumulates, model_zero_grad zeroes */
size_t model_lora_n_params(const Model *m);
/* W0 += s B A on every site (computed on the host in double), then mode OFF for good (the base now IS the
 * policy): before model_save of a merged export. */
void model_lora_merge(Model *m);

/* Parses a config.json text (path only names it in errors). Exposed for tests and the tokenizer stage. */
int model_config_parse(ModelConfig *c, const char *json_text, const char *path);

#endif /* QUORUM_MODEL_H */
