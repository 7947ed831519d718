/* model_pack.c - packed reward scoring (quorum/model.h model_reward_packed): pairs share their common token
 * prefix, units sorted by size are packed into forwards of a token budget, and forward_packed
 * (model_forward.c) runs each stream with one attention segment per prefix / sequence (quorum/ops.h
 * attention_varlen_forward). */
#include "model_internal.h"
#include "quorum/common.h"

#include <stdlib.h>
#include <string.h>

/* A unit runs together: one sequence (b < 0), or a pair whose first P tokens are run once (P = 0: not shared). */
typedef struct {
    int a, b, P, ntok;
} Unit;

/* the stream being built for one forward */
typedef struct {
    int *ids, *pos, *segs, *rows, *owner; /* owner[m]: the input sequence of row m */
    int N, S, M;
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

/* the reward row of sequence s: the last token of its own segment */
static void stream_row(Stream *st, int s) {
    st->rows[st->M] = st->N - 1;
    st->owner[st->M++] = s;
}

static void stream_unit(Stream *st, const Unit *u, const int32_t *const *seqs, const int *lens) {
    if (u->b < 0 || u->P == 0) {
        stream_seg(st, seqs[u->a], 0, lens[u->a], 0, 0);
        stream_row(st, u->a);
        if (u->b >= 0) {
            stream_seg(st, seqs[u->b], 0, lens[u->b], 0, 0);
            stream_row(st, u->b);
        }
        return;
    }
    int k0 = stream_seg(st, seqs[u->a], 0, u->P, 0, 0); /* the shared prefix, causal within itself */
    stream_seg(st, seqs[u->a], u->P, lens[u->a], k0, u->P);
    stream_row(st, u->a);
    stream_seg(st, seqs[u->b], u->P, lens[u->b], k0, u->P);
    stream_row(st, u->b);
}

static int check_seqs(const Model *m, const int32_t *const *seqs, const int *lens, int n) {
    if (m->cfg.head != HEAD_REWARD || m->cfg.reward_head == RHEAD_ARMO)
        return quorum_input_error("model:reward_packed", "%s: packed scoring needs a reward model with a linear or MLP "
                                  "head (use model_reward)", m->cfg.architecture);
    if (!m->be->attention_varlen_forward)
        return quorum_input_error("model:reward_packed", "backend %s has no attention_varlen_forward (use model_reward)",
                                  m->be->name);
    for (int s = 0; s < n; s++) {
        if (lens[s] < 1 || (m->cfg.arch == ARCH_GPT2 && lens[s] > m->cfg.max_pos))
            return quorum_input_error("model:reward_packed:lens", "lens[%d]=%d not in [1,%d]", s, lens[s],
                                      m->cfg.arch == ARCH_GPT2 ? m->cfg.max_pos : 1 << 30);
        for (int t = 0; t < lens[s]; t++)
            if (seqs[s][t] < 0 || seqs[s][t] >= m->cfg.vocab_size)
                return quorum_input_error("model:reward_packed:ids", "seqs[%d][%d]=%d not in [0,%d)", s, t, seqs[s][t],
                                          m->cfg.vocab_size);
    }
    return 0;
}

/* Units in input order: pairs (2i, 2i+1) with their shared prefix when asked, else single sequences. */
static Unit *make_units(const int32_t *const *seqs, const int *lens, int n, int share, int *nu) {
    Unit *u = xmalloc(sizeof(Unit) * (n + 1));
    int k = 0;
    for (int s = 0; s < n; s++) {
        if (share && s % 2 == 0 && s + 1 < n) {
            int P = lcp(seqs[s], lens[s], seqs[s + 1], lens[s + 1]);
            P = P > lens[s] - 1 ? lens[s] - 1 : P; /* each side keeps its last token: its reward row */
            P = P > lens[s + 1] - 1 ? lens[s + 1] - 1 : P;
            u[k++] = (Unit){.a = s, .b = s + 1, .P = P, .ntok = lens[s] + lens[s + 1] - P};
            s++;
        } else {
            u[k++] = (Unit){.a = s, .b = -1, .ntok = lens[s]};
        }
    }
    *nu = k;
    return u;
}

int model_reward_packed(Model *m, const int32_t *const *seqs, const int *lens, int n, const ModelPackOpts *opts,
                        float *reward, ModelPackStats *stats) {
    m->last = 0;
    if (check_seqs(m, seqs, lens, n)) return -1;
    if (m->grad_enabled) model_set_grad_enabled(m, 0);
    int budget = opts && opts->token_budget > 0 ? opts->token_budget : 8192, nu;
    Unit *u = make_units(seqs, lens, n, opts && opts->share_pairs, &nu);
    qsort(u, nu, sizeof(Unit), unit_cmp);
    int biggest = 0;
    for (int i = 0; i < nu; i++) biggest = u[i].ntok > biggest ? u[i].ntok : biggest;
    int cap = biggest > budget ? biggest : budget;
    Stream st = {.ids = xmalloc(sizeof(int) * cap), .pos = xmalloc(sizeof(int) * cap),
                 .segs = xmalloc(sizeof(int) * 4 * 3 * (size_t)(n + 1)), .rows = xmalloc(sizeof(int) * (n + 1)),
                 .owner = xmalloc(sizeof(int) * (n + 1))};
    float *r = xmalloc(sizeof(float) * (n + 1));
    ModelPackStats ps = {0};
    for (int i = 0; i < nu;) {
        st.N = st.S = st.M = 0;
        do stream_unit(&st, &u[i++], seqs, lens); /* greedy: whole units while they fit */
        while (i < nu && st.N + u[i].ntok <= budget);
        forward_packed(m, st.ids, st.pos, st.N, st.segs, st.S, st.rows, st.M);
        m->be->to_host(r, m->a.logits, sizeof(float) * st.M);
        for (int k = 0; k < st.M; k++) reward[st.owner[k]] = r[k];
        ps.forwards++;
        ps.tokens += st.N;
    }
    for (int s = 0; s < n; s++) ps.shared_tokens += lens[s];
    ps.shared_tokens -= ps.tokens;
    if (stats) *stats = ps;
    free(st.ids), free(st.pos), free(st.segs), free(st.rows), free(st.owner), free(r), free(u);
    return 0;
}
