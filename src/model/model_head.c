/* model_head.c - reward heads as small declared programs over the final hidden state.
 *
 * A *ForSequenceClassification checkpoint's head is chosen by its tensor names: the first HEADS row
 * whose `probe` tensor the checkpoint holds. A program is a list of steps applied to the gathered,
 * final-normed hidden rows gn (M,C); the last step must output width 1 (the reward).
 *   score   score.weight [1,C], no bias                        (HF *ForSequenceClassification)
 *   mlp     score.0 Linear(C,C)+bias, ReLU, score.2 Linear(C,1)+bias   (INF-ORM-Llama3.1-70B)
 *
 *   armo    ArmoRM (architecture LlamaForRewardModelWithGating; tensor names from its modeling code):
 *           r = regression_layer.weight [K,C] @ h_last (K = num_objectives objectives), g = softmax(gating MLP
 *           (gating.layers.0..n: Linear+bias, ReLU between, gating_n_hidden hidden layers of
 *           gating_hidden_dim) of h_gate / gating_temperature) * gating.logit_scale, reward =
 *           sum_j g[j] (r @ reward_transform_matrix)[j]. h_gate is the hidden state at the START of the
 *           last occurrence of the gating token pattern (Llama-3 <|eot_id|><|start_header_id|>assistant
 *           <|end_header_id|>\n\n; config "gating_token_pattern" overrides; a sequence without it, e.g. a
 *           response that filled max_length, is gated at its last token, with one warning per model). A
 *           forward-only head evaluated on
 *           the host in double (tiny next to the trunk), so it runs with any backend; backward refuses.
 *
 * Adding a head: append a row to HEADS below (most specific probe first) naming its tensors (file names,
 * nn.Linear [out,in] layout) and widths (W_HIDDEN = the model's hidden size), plus a RewardHeadKind in
 * quorum/model.h. A step kind the table lacks (e.g. a gating softmax) needs a HOP_* case in
 * head_forward / head_backward, with a backend op (quorum/ops.h) for anything not a matmul or ReLU,
 * and a torch re-implementation in tests/model/ref_model.py (head_forward there). */
#include "model_internal.h"
#include "quorum/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { W_HIDDEN = -1 };

typedef struct {
    int op;
    const char *weight, *bias; /* HOP_LINEAR: tensor names; bias NULL = none */
    int out;                   /* HOP_LINEAR output width (W_HIDDEN or a number) */
} HeadOpSpec;

typedef struct {
    RewardHeadKind kind;
    const char *probe;
    int n;
    HeadOpSpec ops[HEAD_MAX_STEPS];
} HeadSpec;

static const HeadSpec HEADS[] = {
    {RHEAD_MLP, "score.0.weight", 3,
     {{HOP_LINEAR, "score.0.weight", "score.0.bias", W_HIDDEN}, {HOP_RELU, NULL, NULL, 0},
      {HOP_LINEAR, "score.2.weight", "score.2.bias", 1}}},
    {RHEAD_LINEAR, "score.weight", 1, {{HOP_LINEAR, "score.weight", NULL, 1}}},
};
enum { N_HEADS = sizeof HEADS / sizeof HEADS[0] };

static const HeadSpec *spec_of(RewardHeadKind k) {
    for (int i = 0; i < N_HEADS; i++)
        if (HEADS[i].kind == k) return &HEADS[i];
    return &HEADS[N_HEADS - 1];
}

int head_detect(Model *m, const SafeTensors *st, const char *cfg_path) {
    (void)cfg_path; /* a checkpoint with no probe at all keeps the linear head: load names score.weight missing */
    if (m->cfg.reward_head == RHEAD_ARMO) return 0; /* set by the architecture */
    m->cfg.reward_head = RHEAD_LINEAR;
    for (int i = 0; i < N_HEADS; i++)
        if (safetensors_find(st, HEADS[i].probe)) {
            m->cfg.reward_head = HEADS[i].kind;
            break;
        }
    return 0;
}

static void armo_table_build(Model *m, size_t (*add)(Model *, const char *, int64_t, int64_t, int)) {
    const ModelConfig *c = &m->cfg;
    int K = c->armo.objectives, in = c->d_model;
    m->n_hsteps = 0;
    m->armo_reg = add(m, "regression_layer.weight", K, c->d_model, 0);
    for (int i = 0; i <= c->armo.n_hidden; i++) {
        char name[64];
        int out = i < c->armo.n_hidden ? c->armo.hidden : K;
        snprintf(name, sizeof name, "gating.layers.%d.weight", i);
        m->armo_w[i] = add(m, name, out, in, 0);
        snprintf(name, sizeof name, "gating.layers.%d.bias", i);
        m->armo_b[i] = add(m, name, out, 0, 0);
        in = out;
    }
    m->armo_scale = add(m, "gating.logit_scale", 1, 0, 0);
    m->armo_T = add(m, "reward_transform_matrix", K, K, 0);
}

void head_table_build(Model *m, size_t (*add)(Model *, const char *, int64_t, int64_t, int)) {
    if (m->cfg.reward_head == RHEAD_ARMO) {
        armo_table_build(m, add);
        return;
    }
    const HeadSpec *h = spec_of(m->cfg.reward_head);
    int in = m->cfg.d_model;
    m->n_hsteps = h->n;
    for (int i = 0; i < h->n; i++) {
        HeadStep *s = &m->hsteps[i];
        s->op = h->ops[i].op;
        s->in = in;
        s->w = s->b = OFF_NONE;
        if (s->op == HOP_LINEAR) {
            s->out = h->ops[i].out == W_HIDDEN ? m->cfg.d_model : h->ops[i].out;
            s->w = add(m, h->ops[i].weight, s->out, in, 0);
            if (h->ops[i].bias) s->b = add(m, h->ops[i].bias, s->out, 0, 0);
        } else {
            s->out = in;
        }
        in = s->out;
    }
}

size_t head_width(const Model *m) {
    size_t w = 0;
    for (int i = 0; i + 1 < m->n_hsteps; i++) w += (size_t)m->hsteps[i].out;
    return w;
}

/* step i's output (i = -1: the input gn); d = 1 for its gradient buffer */
static float *step_buf(Model *m, int i, int M, int d) {
    if (i < 0) return d ? m->a.dgn : m->a.gn;
    if (i == m->n_hsteps - 1) return d ? m->a.dlogp : m->a.logits;
    size_t off = 0;
    for (int k = 0; k < i; k++) off += (size_t)M * m->hsteps[k].out;
    return (d ? m->a.dhact : m->a.hact) + off;
}

#define P(off) ((off) == OFF_NONE ? NULL : m->params + (off))
#define G(off) ((off) == OFF_NONE ? NULL : m->grads + (off))

/* ---- ArmoRM ---- */

static int armo_int(const cJSON *j, const char *key, int def, int lo, int hi, const char *path, int *out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    *out = def;
    if (!x || cJSON_IsNull(x)) return 0;
    if (cJSON_IsNumber(x) && x->valuedouble == (int)x->valuedouble && x->valuedouble >= lo && x->valuedouble <= hi) {
        *out = (int)x->valuedouble;
        return 0;
    }
    char where[1100];
    snprintf(where, sizeof where, "%s:%s", path, key);
    return quorum_input_error(where, "must be an integer in [%d, %d]", lo, hi);
}

int head_config_parse(ModelConfig *c, const cJSON *j, const char *path) {
    static const int32_t llama3[] = {128009, 128006, 78191, 128007, 271};
    if (armo_int(j, "num_objectives", 19, 1, 1 << 16, path, &c->armo.objectives) ||
        armo_int(j, "gating_hidden_dim", 1024, 1, 1 << 20, path, &c->armo.hidden) ||
        armo_int(j, "gating_n_hidden", 3, 0, HEAD_MAX_STEPS - 1, path, &c->armo.n_hidden))
        return -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "gating_temperature");
    c->armo.temperature = cJSON_IsNumber(t) ? (float)t->valuedouble : 10.0f;
    char where[1100];
    snprintf(where, sizeof where, "%s:gating_temperature", path);
    if (!(c->armo.temperature > 0)) return quorum_input_error(where, "must be positive");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "gating_token_pattern");
    c->armo.pattern_len = 5;
    memcpy(c->armo.pattern, llama3, sizeof llama3);
    if (!pat) return 0;
    snprintf(where, sizeof where, "%s:gating_token_pattern", path);
    int n = cJSON_GetArraySize(pat);
    if (!cJSON_IsArray(pat) || n < 1 || n > 8) return quorum_input_error(where, "must be a list of 1 to 8 token ids");
    c->armo.pattern_len = n;
    int i = 0;
    for (const cJSON *e = pat->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0) return quorum_input_error(where, "must be a list of 1 to 8 token ids");
        c->armo.pattern[i] = (int32_t)e->valuedouble;
    }
    return 0;
}

void head_gate_rows(Model *m, const int32_t *ids, const int *lens, int B, int T, int *rows) {
    int n = m->cfg.armo.pattern_len;
    for (int b = 0; b < B; b++) {
        const int32_t *x = ids + (size_t)b * T;
        int at = -1;
        for (int j = lens[b] - n; j >= 0 && at < 0; j--)
            if (!memcmp(x + j, m->cfg.armo.pattern, sizeof(int32_t) * n)) at = j;
        if (at < 0 && m->armo_missing++ == 0) /* once per model: a truncation can cut the prompt away */
            quorum_warn("%s: a sequence lacks the gating token pattern (%d ids from %d; its prompt was truncated "
                        "away?): such sequences are gated at their last token (warned once)", m->cfg.architecture, n,
                        (int)m->cfg.armo.pattern[0]);
        rows[b] = b * T + (at < 0 ? lens[b] - 1 : at);
    }
}

static double *host_tensor(const Model *m, size_t off, size_t n) {
    float *f = xmalloc(sizeof(float) * n);
    double *d = xmalloc(sizeof(double) * n);
    m->be->to_host(f, m->params + off, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

/* y (out) = W (out,in) x (+ b), in double */
static void host_linear(double *y, const double *W, const double *b, const double *x, int out, int in) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0.0;
        for (int i = 0; i < in; i++) s += W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

/* rows 0..B-1 of gn: last tokens; rows B..2B-1: gating positions. Writes B rewards into a.logits. */
static void armo_forward(Model *m, int M) {
    const ModelConfig *c = &m->cfg;
    int B = M / 2, C = c->d_model, K = c->armo.objectives, H = c->armo.hidden, L = c->armo.n_hidden;
    int wide = H > K ? (H > C ? H : C) : (K > C ? K : C);
    float *gf = xmalloc(sizeof(float) * (size_t)M * C + 1);
    m->be->to_host(gf, m->a.gn, sizeof(float) * (size_t)M * C);
    double *reg = host_tensor(m, m->armo_reg, (size_t)K * C), *Tm = host_tensor(m, m->armo_T, (size_t)K * K);
    double *scale = host_tensor(m, m->armo_scale, 1), *W[HEAD_MAX_STEPS], *bias[HEAD_MAX_STEPS];
    for (int i = 0, in = C; i <= L; i++) {
        int out = i < L ? H : K;
        W[i] = host_tensor(m, m->armo_w[i], (size_t)out * in);
        bias[i] = host_tensor(m, m->armo_b[i], (size_t)out);
        in = out;
    }
    double *x = xmalloc(sizeof(double) * wide), *y = xmalloc(sizeof(double) * wide), *r = xmalloc(sizeof(double) * K);
    float *out = xmalloc(sizeof(float) * (B + 1));
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < C; i++) x[i] = gf[(size_t)b * C + i];
        host_linear(r, reg, NULL, x, K, C); /* objectives at the last token */
        for (int i = 0; i < C; i++) x[i] = gf[(size_t)(B + b) * C + i];
        for (int l = 0, in = C; l <= L; l++) { /* gating MLP at the prompt end */
            int o = l < L ? H : K;
            host_linear(y, W[l], bias[l], x, o, in);
            for (int i = 0; i < o; i++) x[i] = l < L && y[i] < 0 ? 0.0 : y[i];
            in = o;
        }
        double mx = -INFINITY, sum = 0.0, score = 0.0;
        for (int k = 0; k < K; k++) mx = fmax(mx, x[k] / c->armo.temperature);
        for (int k = 0; k < K; k++) sum += (x[k] = exp(x[k] / c->armo.temperature - mx));
        for (int j = 0; j < K; j++) { /* sum_j gate[j] * (r @ T)[j] */
            double adj = 0.0;
            for (int k = 0; k < K; k++) adj += r[k] * Tm[(size_t)k * K + j];
            score += x[j] / sum * scale[0] * adj;
        }
        out[b] = (float)score;
    }
    m->be->to_backend(m->a.logits, out, sizeof(float) * B);
    for (int i = 0; i <= L; i++) free(W[i]), free(bias[i]);
    free(reg), free(Tm), free(scale), free(x), free(y), free(r), free(out), free(gf);
}

void rhead_forward(Model *m, int M) {
    if (m->cfg.reward_head == RHEAD_ARMO) {
        armo_forward(m, M);
        return;
    }
    for (int i = 0; i < m->n_hsteps; i++) {
        const HeadStep *s = &m->hsteps[i];
        float *x = step_buf(m, i - 1, M, 0), *y = step_buf(m, i, M, 0);
        if (s->op == HOP_LINEAR) m->be->matmul_forward(y, x, P(s->w), P(s->b), M, s->in, s->out);
        else m->be->relu_forward(y, x, (size_t)M * s->in);
    }
}

void rhead_backward(Model *m, int M) {
    if (head_width(m)) m->be->zero(m->a.dhact, sizeof(float) * M * head_width(m));
    for (int i = m->n_hsteps - 1; i >= 0; i--) {
        const HeadStep *s = &m->hsteps[i];
        float *x = step_buf(m, i - 1, M, 0), *dx = step_buf(m, i - 1, M, 1);
        float *y = step_buf(m, i, M, 0), *dy = step_buf(m, i, M, 1);
        if (s->op == HOP_LINEAR) m->be->matmul_backward(dx, G(s->w), G(s->b), dy, x, P(s->w), M, s->in, s->out);
        else m->be->relu_backward(dx, dy, y, (size_t)M * s->in);
    }
}
