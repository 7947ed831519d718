/* model_head.c - reward heads as small declared programs over the final hidden state.
 *
 * A *ForSequenceClassification checkpoint's head is chosen by its tensor names: the first HEADS row
 * whose `probe` tensor the checkpoint holds. A program is a list of steps applied to the gathered,
 * final-normed hidden rows gn (M,C); the last step must output width 1 (the reward).
 *   score   score.weight [1,C], no bias                        (HF *ForSequenceClassification)
 *   mlp     score.0 Linear(C,C)+bias, ReLU, score.2 Linear(C,1)+bias   (INF-ORM-Llama3.1-70B)
 *
 * Adding a head: append a row to HEADS below (most specific probe first) naming its tensors (file names,
 * nn.Linear [out,in] layout) and widths (W_HIDDEN = the model's hidden size), plus a RewardHeadKind in
 * quorum/model.h. A step kind the table lacks (e.g. a gating softmax) needs a HOP_* case in
 * head_forward / head_backward, with a backend op (quorum/ops.h) for anything not a matmul or ReLU,
 * and a torch re-implementation in tests/model/ref_model.py (head_forward there). */
#include "model_internal.h"
#include "quorum/common.h"

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
    m->cfg.reward_head = RHEAD_LINEAR;
    for (int i = 0; i < N_HEADS; i++)
        if (safetensors_find(st, HEADS[i].probe)) {
            m->cfg.reward_head = HEADS[i].kind;
            break;
        }
    return 0;
}

void head_table_build(Model *m, size_t (*add)(Model *, const char *, int64_t, int64_t, int)) {
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

void rhead_forward(Model *m, int M) {
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
