/*
 * member_lm.c - committee members that are causal LMs (quorum/score.h): kind "lm" (IFD per response),
 * "implicit" (policy + reference: log pi(y|x) - log pi_ref(y|x)) and "judge" (expected rating).
 *
 * Every log-prob comes from the engine's DPO path: the sequences are TokPairs (quorum/tokpairs.h: TRL
 * classic truncation by tokpairs_push, padded batches with completion masks by batch_build) and the
 * sums are model_logprobs (quorum/model.h). Nothing here re-implements a forward or a log-softmax.
 */
#include "quorum/backend.h"
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/score.h"
#include "quorum/tokenizer.h"
#include "quorum/tokpairs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Tokenizer *tok;
    ChatTemplate *ct;
    Model *lm, *ref;  /* ref: implicit members only */
    char *judge;      /* judge members: the prompt template text */
} LmMember;

const char *const MEMBER_JUDGE_DEFAULT_TEMPLATE =
    "Here is a conversation between a human and an AI assistant, followed by the assistant's next reply.\n\n"
    "{prompt}\n\nReply: {response}\n\n"
    "Rate the reply for helpfulness and harmlessness on a scale from 1 (worst) to 10 (best). "
    "Answer with the number only.";

/* ---- sequences ---- */

static int render_error(const Member *m, const Pair *p, const char *what) {
    char where[1500];
    snprintf(where, sizeof where, "corpus %s: record %lld", m->corpus ? m->corpus : "?", (long long)p->id);
    return quorum_input_error(where, "member %s (%s, kind %s): %s", m->cfg.name, m->cfg.path,
                              member_kind_name(m->cfg.kind), what);
}

/* prompt + chosen / prompt + rejected with the member's chat template, truncated as TRL classic with
 * max_prompt_length = max_length / 2 (the DPO trainer's rule). */
static int render_pairs(const Member *m, const Pair *pairs, int64_t n, TokPairs *out) {
    const LmMember *h = m->impl;
    I32Vec ic = {0}, ir = {0};
    int rc = 0;
    memset(out, 0, sizeof *out);
    for (int64_t i = 0; i < n && rc == 0; i++) {
        const Pair *p = &pairs[i];
        int plc = 0, plr = 0, folded;
        int64_t lc, lr;
        const char *c = pair_response(p, 0, &lc), *r = pair_response(p, 1, &lr);
        ic.len = ir.len = 0;
        if (chat_render_folded(h->ct, h->tok, p->turns, p->n_turns, c, (size_t)lc, &ic, &plc, &folded) ||
            chat_render_folded(h->ct, h->tok, p->turns, p->n_turns, r, (size_t)lr, &ir, &plr, &folded))
            rc = render_error(m, p, "its chat template cannot render the pair");
        else if (plc != plr || memcmp(ic.data, ir.data, sizeof(int32_t) * (size_t)plc))
            rc = render_error(m, p, "the chosen and rejected renderings do not share the prompt ids");
        else
            tokpairs_push(out, p->id, ic.data, plc, ic.data + plc, (int)ic.len - plc, ir.data + plc,
                          (int)ir.len - plc, m->cfg.max_length, m->cfg.max_length / 2);
    }
    i32vec_free(&ic);
    i32vec_free(&ir);
    return rc;
}

/* Sum of response-token log-probs of both sequences of every pair of d, batch_size sequences per
 * forward. */
static int seq_logps(Model *model, const TokPairs *d, int batch_size, double *lc, double *lr) {
    int B = batch_size / 2 > 0 ? batch_size / 2 : 1; /* pairs per forward: 2B sequences */
    int64_t *idx = xmalloc(sizeof(int64_t) * (size_t)B);
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int *lens = NULL;
    size_t cap = 0;
    float *out = xmalloc(sizeof(float) * (size_t)(2 * B));
    int rc = 0;
    for (int64_t i0 = 0; i0 < d->n && rc == 0; i0 += B) {
        int b = (int)(d->n - i0 < B ? d->n - i0 : B);
        for (int j = 0; j < b; j++) idx[j] = i0 + j;
        int T = batch_build(d, idx, b, &ids, &mask, &lens, &cap);
        rc = model_logprobs(model, ids, lens, mask, 2 * b, T, out);
        for (int j = 0; j < b && rc == 0; j++) {
            lc[i0 + j] = out[j];
            lr[i0 + j] = out[b + j];
        }
    }
    free(idx); free(ids); free(mask); free(lens); free(out);
    return rc;
}

/* Tokens model_logprobs scores in a sequence of length len with prompt length np: t in [np, len), t >= 1. */
static int64_t scored_tokens(int64_t len, int np) {
    int64_t first = np > 1 ? np : 1;
    return len > first ? len - first : 0;
}

/* ---- kind lm: IFD ---- */

/* The responses of c alone, after BOS when the tokenizer has one: the unconditional sequences. */
static void responses_alone(const TokPairs *c, int32_t bos, TokPairs *u) {
    memset(u, 0, sizeof *u);
    int np = bos >= 0 ? 1 : 0;
    for (int64_t i = 0; i < c->n; i++) {
        int pl = c->prompt_len[i];
        const int32_t *ch = c->ids + c->chosen_off[i] + pl, *rj = c->ids + c->rejected_off[i] + pl;
        int nc = (int)(c->rejected_off[i] - c->chosen_off[i]) - pl, nr = (int)(c->chosen_off[i + 1] - c->rejected_off[i]) - pl;
        tokpairs_push(u, c->pair_id[i], &bos, np, ch, nc, rj, nr, 1 << 30, 1 << 30);
    }
}

static double ifd_of(double lp_cond, int64_t n_cond, double lp_alone, int64_t n_alone) {
    if (n_cond <= 0 || n_alone <= 0) return MEMBER_IFD_EMPTY;
    return exp(lp_alone / (double)n_alone - lp_cond / (double)n_cond); /* PPL(y|x) / PPL(y) */
}

static int lm_score(Member *m, const Pair *pairs, int64_t n, float *chosen, float *rejected) {
    LmMember *h = m->impl;
    TokPairs c, u;
    int rc = render_pairs(m, pairs, n, &c);
    size_t nn = (size_t)(n ? n : 1);
    double *cc = xmalloc(nn * sizeof(double)), *cr = xmalloc(nn * sizeof(double));
    double *uc = xmalloc(nn * sizeof(double)), *ur = xmalloc(nn * sizeof(double));
    memset(&u, 0, sizeof u);
    if (rc == 0) {
        responses_alone(&c, tokenizer_bos(h->tok), &u);
        rc = seq_logps(h->lm, &c, m->cfg.batch_size, cc, cr);
    }
    if (rc == 0) rc = seq_logps(h->lm, &u, m->cfg.batch_size, uc, ur);
    for (int64_t i = 0; i < n && rc == 0; i++) {
        int pc = c.prompt_len[i], pu = u.prompt_len[i];
        chosen[i] = (float)ifd_of(cc[i], scored_tokens(c.rejected_off[i] - c.chosen_off[i], pc), uc[i],
                                  scored_tokens(u.rejected_off[i] - u.chosen_off[i], pu));
        rejected[i] = (float)ifd_of(cr[i], scored_tokens(c.chosen_off[i + 1] - c.rejected_off[i], pc), ur[i],
                                    scored_tokens(u.chosen_off[i + 1] - u.rejected_off[i], pu));
    }
    tokpairs_free(&c);
    tokpairs_free(&u);
    free(cc); free(cr); free(uc); free(ur);
    return rc;
}

/* ---- kind implicit: log pi(y|x) - log pi_ref(y|x) ---- */

static int implicit_score(Member *m, const Pair *pairs, int64_t n, float *chosen, float *rejected) {
    LmMember *h = m->impl;
    TokPairs c;
    int rc = render_pairs(m, pairs, n, &c);
    size_t nn = (size_t)(n ? n : 1);
    double *pc = xmalloc(nn * sizeof(double)), *pr = xmalloc(nn * sizeof(double));
    double *rc_ = xmalloc(nn * sizeof(double)), *rr = xmalloc(nn * sizeof(double));
    if (rc == 0) rc = seq_logps(h->lm, &c, m->cfg.batch_size, pc, pr);
    if (rc == 0) rc = seq_logps(h->ref, &c, m->cfg.batch_size, rc_, rr);
    for (int64_t i = 0; i < n && rc == 0; i++) {
        chosen[i] = (float)(pc[i] - rc_[i]);
        rejected[i] = (float)(pr[i] - rr[i]);
    }
    tokpairs_free(&c);
    free(pc); free(pr); free(rc_); free(rr);
    return rc;
}

/* ---- kind judge: expected rating ---- */

static const char *const ROLE_LABEL[ROLE_COUNT] = {"System", "Human", "Assistant", "Observation", "Function call"};

/* The dialogue as text: "Human: t1\n\nAssistant: t2\n\nHuman: t3" (see quorum/score.h). */
static void member_judge_dialogue(const Pair *p, Buf *out) {
    for (int t = 0; t < p->n_turns; t++) {
        buf_appendf(out, "%s%s: ", t ? "\n\n" : "", ROLE_LABEL[p->turns[t].role]);
        buf_append(out, p->turns[t].text, (size_t)p->turns[t].len);
    }
}

/* The template with {prompt} and {response} replaced (each occurrence, left to right). */
static void judge_text(const char *tpl, const Pair *p, const char *resp, int64_t resp_len, Buf *out) {
    for (const char *s = tpl; *s;) {
        if (!strncmp(s, "{prompt}", 8)) { member_judge_dialogue(p, out); s += 8; }
        else if (!strncmp(s, "{response}", 10)) { buf_append(out, resp, (size_t)resp_len); s += 10; }
        else buf_append(out, s++, 1);
    }
}

/* Pushes the 10 rating answers "1".."10" after one judging prompt, as 5 pairs sharing the prompt. */
static int push_ratings(const Member *m, const Pair *p, const Buf *text, TokPairs *d) {
    const LmMember *h = m->impl;
    Turn turn = {ROLE_USER, text->data, (int64_t)text->len};
    I32Vec a = {0}, b = {0};
    int rc = 0;
    for (int k = 1; k <= 10 && rc == 0; k += 2) {
        char ka[4], kb[4];
        snprintf(ka, sizeof ka, "%d", k);
        snprintf(kb, sizeof kb, "%d", k + 1);
        int pa = 0, pb = 0;
        a.len = b.len = 0;
        if (chat_render(h->ct, h->tok, &turn, 1, ka, strlen(ka), &a, &pa) ||
            chat_render(h->ct, h->tok, &turn, 1, kb, strlen(kb), &b, &pb) || pa != pb)
            rc = render_error(m, p, "its chat template cannot render the judging prompt");
        else /* long prompts lose their start: the template ends with the instruction */
            tokpairs_push(d, p->id, a.data, pa, a.data + pa, (int)a.len - pa, b.data + pb, (int)b.len - pb,
                          m->cfg.max_length, m->cfg.max_length - 8);
    }
    i32vec_free(&a);
    i32vec_free(&b);
    return rc;
}

/* E[k] = sum_k k * softmax(lp)_k over the 10 ratings (lp[k-1] = log P(answer k | prompt)). */
static double expected_rating(const double *lp) {
    double mx = lp[0], z = 0, e = 0;
    for (int k = 1; k < 10; k++) mx = lp[k] > mx ? lp[k] : mx;
    for (int k = 0; k < 10; k++) {
        double w = exp(lp[k] - mx);
        z += w;
        e += (k + 1) * w;
    }
    return e / z;
}

static int judge_score(Member *m, const Pair *pairs, int64_t n, float *chosen, float *rejected) {
    LmMember *h = m->impl;
    TokPairs d;
    memset(&d, 0, sizeof d);
    Buf text = {0};
    int rc = 0;
    for (int64_t i = 0; i < 2 * n && rc == 0; i++) { /* response i: pair i/2, chosen or rejected */
        int64_t len;
        const char *resp = pair_response(&pairs[i / 2], (int)(i % 2), &len);
        text.len = 0;
        judge_text(h->judge, &pairs[i / 2], resp, len, &text);
        rc = push_ratings(m, &pairs[i / 2], &text, &d);
    }
    size_t ns = (size_t)(d.n ? d.n : 1);
    double *la = xmalloc(ns * sizeof(double)), *lb = xmalloc(ns * sizeof(double));
    if (rc == 0) rc = seq_logps(h->lm, &d, m->cfg.batch_size, la, lb);
    for (int64_t i = 0; i < 2 * n && rc == 0; i++) {
        double lp[10];
        for (int j = 0; j < 5; j++) lp[2 * j] = la[5 * i + j], lp[2 * j + 1] = lb[5 * i + j];
        (i % 2 ? rejected : chosen)[i / 2] = (float)expected_rating(lp);
    }
    tokpairs_free(&d);
    buf_free(&text);
    free(la); free(lb);
    return rc;
}

/* ---- open / close ---- */

static void lm_close(Member *m) {
    LmMember *h = m->impl;
    if (!h) return;
    if (h->lm) model_free(h->lm);
    if (h->ref) model_free(h->ref);
    if (h->ct) chat_template_free(h->ct);
    if (h->tok) tokenizer_free(h->tok);
    free(h->judge);
    free(h);
    m->impl = NULL;
}

/* A causal LM of the member's folder, inference only, whose vocabulary covers the tokenizer's. */
static int load_lm(const Member *m, const char *dir, Model **out) {
    LmMember *h = m->impl;
    if (model_load(out, dir, backend_auto()) != 0) return -1;
    model_set_grad_enabled(*out, 0);
    const ModelConfig *c = model_config(*out);
    char where[1200];
    snprintf(where, sizeof where, "%s/config.json", dir);
    if (c->head != HEAD_LM)
        return quorum_input_error(where, "committee member %s (kind %s) needs a *ForCausalLM model, found %s",
                                  m->cfg.name, member_kind_name(m->cfg.kind), c->architecture);
    if (c->arch == ARCH_GPT2 && m->cfg.max_length > c->max_pos)
        return quorum_input_error(where, "n_positions %d is less than committee member %s's max_length %d: set "
                                  "\"max_length\" <= %d in the job", c->max_pos, m->cfg.name, m->cfg.max_length, c->max_pos);
    if (tokenizer_vocab_size(h->tok) > c->vocab_size)
        return quorum_input_error(where, "vocab_size %d is smaller than the tokenizer's %d ids (member %s)",
                                  c->vocab_size, tokenizer_vocab_size(h->tok), m->cfg.name);
    return 0;
}

static int load_template(Member *m) {
    LmMember *h = m->impl;
    if (!m->cfg.prompt_template[0]) { h->judge = xstrdup(MEMBER_JUDGE_DEFAULT_TEMPLATE); return 0; }
    size_t n = 0;
    const char *err = NULL;
    h->judge = file_read_all(m->cfg.prompt_template, &n, &err);
    if (!h->judge) return quorum_input_error(m->cfg.prompt_template, "member %s: cannot read the judge prompt template: %s",
                                             m->cfg.name, err);
    if (strlen(h->judge) != n || !strstr(h->judge, "{response}"))
        return quorum_input_error(m->cfg.prompt_template, "member %s: the judge prompt template must be text with a "
                                  "{response} placeholder ({prompt} optional)", m->cfg.name);
    return 0;
}

int member_lm_open(Member *m, const JobMember *cfg) {
    LmMember *h = xcalloc(1, sizeof(LmMember));
    m->cfg = *cfg;
    m->impl = h;
    m->close = lm_close;
    m->score = cfg->kind == MEMBER_LM ? lm_score : cfg->kind == MEMBER_IMPLICIT ? implicit_score : judge_score;
    int rc = (h->tok = tokenizer_load(cfg->path)) && (h->ct = chat_template_load(cfg->path, h->tok)) ? 0 : -1;
    if (rc == 0) rc = load_lm(m, cfg->path, &h->lm);
    if (rc == 0 && cfg->kind == MEMBER_IMPLICIT) rc = load_lm(m, cfg->ref, &h->ref);
    if (rc == 0 && cfg->kind == MEMBER_JUDGE) rc = load_template(m);
    if (rc != 0) lm_close(m);
    return rc;
}
