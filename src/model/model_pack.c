/* model_pack.c - packed forwards (quorum/model.h model_reward_packed, model_logprobs_packed): pairs share their
 * common token prefix, units sorted by size are packed into forwards of a token budget, and forward_packed
 * (model_forward.c) runs each stream with one attention segment per prefix / sequence (quorum/ops.h
 * attention_varlen_forward; attention_varlen_backward when model_backward differentiates a log-prob stream). */
#include "model_internal.h"
#include "quorum/common.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A unit runs together: one sequence (b < 0), or a pair whose first P tokens are run once (P = 0: not shared). */
typedef struct {
    int a, b, P, ntok;
} Unit;

/* the stream being built for one forward */
typedef struct {
    int *ids, *pos, *segs, *rows, *targets; /* targets: LM streams only */
    int *owner; /* (2M): the input sequence(s) row m serves, -1 none (a shared LM row may serve both of a pair) */
    int N, S, M;
    const uint8_t *const *masks; /* LM streams: completion masks, else NULL (reward rows) */
} Stream;

static int lcp(const int32_t *x, int nx, const int32_t *y, int ny) {
    int n = 0;
    while (n < nx && n < ny && x[n] == y[n]) n++;
    return n;
}

static int unit_cmp(const void *pa, const void *pb) { /* biggest first; ties in input order (deterministic) */
    const Unit *a = pa, *b = pb;
    if (a->ntok != b->ntok) return b->ntok - a->ntok;
    return a->a - b->a;
}

/* Appends tokens x[from, to) at positions from.., as a segment continuing from k0 (nk prefix rows; nk = 0 none). */
static int stream_seg(Stream *st, const int32_t *x, int from, int to, int k0, int nk) {
    int q0 = st->N;
    for (int t = from; t < to; t++) {
        st->ids[st->N] = x[t];
        st->pos[st->N++] = t;
    }
    int *g = st->segs + 4 * st->S++;
    g[0] = q0, g[1] = to - from, g[2] = k0, g[3] = nk;
    return q0;
}

static void stream_row(Stream *st, int row, int target, int s1, int s2) {
    st->rows[st->M] = row;
    if (st->targets) st->targets[st->M] = target;
    st->owner[2 * st->M] = s1;
    st->owner[2 * st->M++ + 1] = s2;
}

/* Rows of sequence s whose tokens it continues from row `at` (position `from`) up to its end: a reward model's last
 * row, or an LM's rows at positions p in [from, lens[s]-1) whose next token is masked. */
static void stream_rows(Stream *st, int at, int from, int s, const int32_t *x, int len) {
    if (!st->masks) {
        stream_row(st, at + len - 1 - from, 0, s, -1);
        return;
    }
    for (int p = from; p < len - 1; p++)
        if (st->masks[s][p + 1]) stream_row(st, at + p - from, x[p + 1], s, -1);
}

static void stream_unit(Stream *st, const Unit *u, const int32_t *const *seqs, const int *lens) {
    int a = u->a, b = u->b, P = u->P;
    if (b < 0 || P == 0) {
        stream_rows(st, stream_seg(st, seqs[a], 0, lens[a], 0, 0), 0, a, seqs[a], lens[a]);
        if (b >= 0) stream_rows(st, stream_seg(st, seqs[b], 0, lens[b], 0, 0), 0, b, seqs[b], lens[b]);
        return;
    }
    int k0 = stream_seg(st, seqs[a], 0, P, 0, 0); /* the shared prefix, causal within itself */
    for (int p = 0; st->masks && p < P; p++) { /* its rows predict tokens p+1 <= P, the same in both (P < lcp) */
        int ma = st->masks[a][p + 1], mb = st->masks[b][p + 1];
        if (ma || mb) stream_row(st, k0 + p, seqs[a][p + 1], ma ? a : b, ma && mb ? b : -1);
    }
    stream_rows(st, stream_seg(st, seqs[a], P, lens[a], k0, P), P, a, seqs[a], lens[a]);
    stream_rows(st, stream_seg(st, seqs[b], P, lens[b], k0, P), P, b, seqs[b], lens[b]);
}

static int check_seqs(const Model *m, const int32_t *const *seqs, const int *lens, int n) {
    if (!m->be->attention_varlen_forward || (m->grad_enabled && !m->be->attention_varlen_backward))
        return quorum_input_error("model:packed", "backend %s has no attention_varlen_%s (use the padded forward)",
                                  m->be->name, m->be->attention_varlen_forward ? "backward" : "forward");
    for (int s = 0; s < n; s++) {
        if (lens[s] < 1 || (m->cfg.arch == ARCH_GPT2 && lens[s] > m->cfg.max_pos))
            return quorum_input_error("model:packed:lens", "lens[%d]=%d not in [1,%d]", s, lens[s],
                                      m->cfg.arch == ARCH_GPT2 ? m->cfg.max_pos : 1 << 30);
        for (int t = 0; t < lens[s]; t++)
            if (seqs[s][t] < 0 || seqs[s][t] >= m->cfg.vocab_size)
                return quorum_input_error("model:packed:ids", "seqs[%d][%d]=%d not in [0,%d)", s, t, seqs[s][t],
                                          m->cfg.vocab_size);
    }
    return 0;
}

/* the other sequence of s's pair, -1 none: (2i, 2i+1), or (i, i+stride) for i < stride */
static int partner(int s, int n, int stride) {
    int p = stride > 0 ? (s < stride ? s + stride : s - stride < stride ? s - stride : -1) : s % 2 ? s - 1 : s + 1;
    return p < n ? p : -1;
}

/* Units in input order: pairs with their shared prefix when asked, else single sequences. A reward
 * pair shares its common prefix; an LM pair one token less, so that every shared row predicts the same token
 * for both sequences (the row before the first difference predicts different tokens: each keeps its own). */
static Unit *make_units(const int32_t *const *seqs, const int *lens, int n, const ModelPackOpts *o, int lm, int *nu) {
    Unit *u = xmalloc(sizeof(Unit) * (n + 1));
    int k = 0, share = o && o->share_pairs;
    for (int s = 0; s < n; s++) {
        int b = share ? partner(s, n, o->pair_stride) : -1;
        if (b >= 0 && b < s) continue; /* in its partner's unit */
        if (b > s) {
            int P = lcp(seqs[s], lens[s], seqs[b], lens[b]) - lm;
            P = P < 0 ? 0 : P;
            P = P > lens[s] - 1 ? lens[s] - 1 : P; /* each side keeps its last token: its reward row */
            P = P > lens[b] - 1 ? lens[b] - 1 : P;
            u[k++] = (Unit){.a = s, .b = b, .P = P, .ntok = lens[s] + lens[b] - P};
        } else {
            u[k++] = (Unit){.a = s, .b = -1, .ntok = lens[s]};
        }
    }
    *nu = k;
    return u;
}

/* Packs the n sequences into forwards of opts->token_budget tokens (grads enabled: all in one, which model_backward
 * then differentiates) and sums each gathered row's output into out[the sequence(s) it serves]: the reward, or the
 * log-prob of an LM target (masks != NULL). */
static void pack_run(Model *m, const int32_t *const *seqs, const int *lens, const uint8_t *const *masks, int n,
                     const ModelPackOpts *opts, float *out, ModelPackStats *stats) {
    int lm = masks != NULL, nu, total = 0, biggest = 0;
    int budget = m->grad_enabled ? INT_MAX : opts && opts->token_budget > 0 ? opts->token_budget : 8192;
    Unit *u = make_units(seqs, lens, n, opts, lm, &nu);
    qsort(u, nu, sizeof(Unit), unit_cmp);
    for (int i = 0; i < nu; i++) biggest = u[i].ntok > biggest ? u[i].ntok : biggest, total += u[i].ntok;
    int cap = biggest > budget ? biggest : budget < total ? budget : total, rcap = lm ? cap : n;
    Stream st = {.ids = xmalloc(sizeof(int) * cap), .pos = xmalloc(sizeof(int) * cap),
                 .segs = xmalloc(sizeof(int) * 4 * 3 * (size_t)(n + 1)), .rows = xmalloc(sizeof(int) * (rcap + 1)),
                 .targets = lm ? xmalloc(sizeof(int) * (rcap + 1)) : NULL,
                 .owner = xmalloc(sizeof(int) * 2 * (rcap + 1)), .masks = masks};
    float *r = xmalloc(sizeof(float) * (rcap + 1));
    ModelPackStats ps = {0};
    for (int s = 0; s < n; s++) out[s] = 0.0f;
    for (int i = 0; i < nu;) {
        st.N = st.S = st.M = 0;
        do stream_unit(&st, &u[i++], seqs, lens); /* greedy: whole units while they fit */
        while (i < nu && st.N + u[i].ntok <= budget);
        forward_packed(m, st.ids, st.pos, st.N, st.segs, st.S, st.rows, st.M, st.targets);
        if (lm) m->be->logprob_forward(m->a.logp, m->a.lse, m->a.logits, m->a.targets, st.M, m->cfg.vocab_size);
        m->be->to_host(r, lm ? m->a.logp : m->a.logits, sizeof(float) * st.M);
        for (int k = 0; k < st.M; k++) {
            out[st.owner[2 * k]] += r[k];
            if (st.owner[2 * k + 1] >= 0) out[st.owner[2 * k + 1]] += r[k];
        }
        ps.forwards++;
        ps.tokens += st.N;
    }
    for (int s = 0; s < n; s++) ps.shared_tokens += lens[s];
    ps.shared_tokens -= ps.tokens;
    if (stats) *stats = ps;
    if (m->grad_enabled && lm) { /* one forward: model_backward maps its rows to sequences by owner */
        free(m->row_seq);
        m->row_seq = st.owner, st.owner = NULL;
        m->last = 2;
    }
    free(st.ids), free(st.pos), free(st.segs), free(st.rows), free(st.targets), free(st.owner), free(r), free(u);
}

int model_reward_packed(Model *m, const int32_t *const *seqs, const int *lens, int n, const ModelPackOpts *opts,
                        float *reward, ModelPackStats *stats) {
    m->last = 0;
    if (m->cfg.head != HEAD_REWARD || m->cfg.reward_head == RHEAD_ARMO)
        return quorum_input_error("model:reward_packed", "%s: packed scoring needs a reward model with a linear or MLP "
                                  "head (use model_reward)", m->cfg.architecture);
    if (m->grad_enabled) model_set_grad_enabled(m, 0);
    if (check_seqs(m, seqs, lens, n)) return -1;
    pack_run(m, seqs, lens, NULL, n, opts, reward, stats);
    return 0;
}

int model_logprobs_packed(Model *m, const int32_t *const *seqs, const int *lens, const uint8_t *const *masks, int n,
                          const ModelPackOpts *opts, float *seq_logp, ModelPackStats *stats) {
    m->last = 0;
    if (m->cfg.head != HEAD_LM)
        return quorum_input_error("model:logprobs_packed", "%s is not a causal LM", m->cfg.architecture);
    if (!masks) return quorum_input_error("model:logprobs_packed:masks", "NULL: one completion mask per sequence needed");
    if (check_seqs(m, seqs, lens, n)) return -1;
    pack_run(m, seqs, lens, masks, n, opts, seq_logp, stats);
    return 0;
}
