/*
 * member_hf.c - a committee member that is a Hugging Face reward model folder:
 * tokenizer.json (+ tokenizer_config.json for the chat template) + config.json + model.safetensors
 * with a *ForSequenceClassification head.
 *
 * Scoring n pairs: each pair gives two sequences (prompt dialogue + chosen, prompt dialogue +
 * rejected) rendered with the member's own chat template. Sequences longer than the member's
 * max_length keep their end: the prompt is cut from the left (the reward head reads the last token,
 * and the response must stay whole), after a leading BOS, which stays (Llama-3 <|begin_of_text|>,
 * Gemma <bos>, Mistral <s>; GPT-2 and Qwen3 render none); only a response longer than max_length
 * (less the BOS) itself is cut, at its end. Every truncation is counted and reported once per call on
 * stderr. The 2n sequences go to model_reward_packed (quorum/model.h): packed back to back into forwards of
 * batch_size x max_length tokens without padding, each pair's common token prefix (its prompt, when the
 * template and truncation left the two sides starting alike) run once. Models it refuses (ArmoRM) score
 * sorted-by-length padded batches of batch_size instead.
 * A pair whose two sequences are identical after truncation is a tie by construction: both sides get
 * the chosen side's reward, bit for bit, and the count is reported.
 */
#include "quorum/backend.h"
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/score.h"
#include "quorum/tokenizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    Tokenizer *tok;
    ChatTemplate *ct;
    Model *model;
    int64_t n_truncated;
    int64_t n_folded;   /* pairs whose system turns were folded into a user turn (chat_fold_turns) */
} HfMember;

typedef struct {
    int64_t idx; /* 2*pair + (0 chosen, 1 rejected) */
    int len;
} SeqRef;

static int cmp_len(const void *a, const void *b) {
    const SeqRef *x = a, *y = b;
    if (x->len != y->len) return x->len - y->len;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int render_error(const Member *m, const HfMember *h, const Pair *p, int rejected) {
    char where[1500];
    snprintf(where, sizeof where, "corpus %s: record %lld: %s", m->corpus ? m->corpus : "?", (long long)p->id,
             rejected ? "rejected" : "chosen");
    return quorum_input_error(where, "member %s (%s) cannot render the pair with its %s chat template", m->cfg.name,
                              m->cfg.path, chat_family_name(chat_template_family(h->ct)));
}

/* Member.check: the text of every pair through the fold rule and the template, no tokenizing. */
static int hf_check(Member *m, const Pair *pairs, int64_t n) {
    HfMember *h = m->impl;
    Turn *turns = NULL;
    Buf scratch = {0}, p = {0}, r = {0};
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        const Pair *q = &pairs[i];
        turns = xrealloc(turns, sizeof(Turn) * (size_t)(q->n_turns + 1));
        scratch.len = p.len = r.len = 0;
        int folded, nt = chat_fold_turns(h->ct, q->turns, q->n_turns, turns, &scratch, &folded);
        for (int side = 0; side < 2 && rc == 0; side++) {
            int64_t len;
            const char *resp = pair_response(q, side, &len);
            if (chat_render_text(h->ct, turns, nt, resp, (size_t)len, &p, &r) != 0) rc = render_error(m, h, q, side);
        }
    }
    free(turns);
    buf_free(&scratch); buf_free(&p); buf_free(&r);
    return rc;
}

/* Renders one sequence and fits it into max_length tokens (see the file comment). */
static int render_fit(HfMember *h, const Member *m, const Pair *p, int rejected, I32Vec *ids) {
    ids->len = 0;
    int prompt_len = 0;
    int64_t resp_len;
    const char *resp = pair_response(p, rejected, &resp_len);
    int folded = 0;
    int rc = chat_render_folded(h->ct, h->tok, p->turns, p->n_turns, resp, (size_t)resp_len, ids, &prompt_len, &folded);
    if (folded && !rejected) h->n_folded++;
    if (rc != 0) return render_error(m, h, p, rejected);
    int max = m->cfg.max_length;
    if ((int)ids->len > max) {
        h->n_truncated++;
        int keep = max > 1 && prompt_len > 0 && ids->data[0] == tokenizer_bos(h->tok); /* a leading BOS stays */
        int room = max - keep, resp_tokens = (int)ids->len - prompt_len;
        int drop = (int)ids->len - max;
        if (resp_tokens >= room) { /* the response alone is too long: keep its first room tokens */
            memmove(ids->data + keep, ids->data + prompt_len, sizeof(int32_t) * (size_t)room);
        } else {                   /* cut the prompt from the left, after the BOS */
            memmove(ids->data + keep, ids->data + keep + drop, sizeof(int32_t) * (size_t)room);
        }
        ids->len = (size_t)max;
    }
    return 0;
}

/* seqs[2i], seqs[2i+1] = pair i's chosen and rejected, packed with shared prefixes */
static int score_packed(HfMember *h, const Member *m, const I32Vec *seqs, int64_t n_seq, float *chosen,
                        float *rejected) {
    const int32_t **sp = xmalloc(sizeof(int32_t *) * (size_t)(n_seq + 1));
    int *lens = xmalloc(sizeof(int) * (size_t)(n_seq + 1));
    float *reward = xmalloc(sizeof(float) * (size_t)(n_seq + 1));
    for (int64_t s = 0; s < n_seq; s++) sp[s] = seqs[s].data, lens[s] = (int)seqs[s].len;
    ModelPackOpts o = {.token_budget = m->cfg.batch_size * m->cfg.max_length, .share_pairs = 1};
    int rc = model_reward_packed(h->model, sp, lens, (int)n_seq, &o, reward, NULL);
    for (int64_t s = 0; s < n_seq && rc == 0; s++) (s % 2 ? rejected : chosen)[s / 2] = reward[s];
    free(sp), free(lens), free(reward);
    return rc;
}

/* sequences in `order` (sorted by length) in right-padded batches of batch_size */
static int score_padded(HfMember *h, const Member *m, const I32Vec *seqs, const SeqRef *order, int64_t n_seq,
                        float *chosen, float *rejected) {
    int B = m->cfg.batch_size, rc = 0;
    int32_t *ids = NULL;
    int *lens = xmalloc(sizeof(int) * (size_t)B);
    float *reward = xmalloc(sizeof(float) * (size_t)B);
    int32_t pad = tokenizer_pad(h->tok);
    if (pad < 0) pad = 0; /* pad positions are never read: right padding + lens */
    for (int64_t s0 = 0; s0 < n_seq && rc == 0; s0 += B) {
        int b_n = (int)((n_seq - s0) < B ? (n_seq - s0) : B);
        int T = order[s0 + b_n - 1].len; /* sorted: the last is the longest */
        if (T < 1) T = 1;
        ids = xrealloc(ids, sizeof(int32_t) * (size_t)B * (size_t)T);
        for (int b = 0; b < b_n; b++) {
            const I32Vec *v = &seqs[order[s0 + b].idx];
            lens[b] = (int)v->len;
            memcpy(ids + (size_t)b * T, v->data, sizeof(int32_t) * v->len);
            for (int t = (int)v->len; t < T; t++) ids[(size_t)b * T + t] = pad;
        }
        rc = model_reward(h->model, ids, lens, b_n, T, reward);
        for (int b = 0; b < b_n && rc == 0; b++) {
            int64_t s = order[s0 + b].idx;
            (s % 2 ? rejected : chosen)[s / 2] = reward[b];
        }
    }
    free(ids), free(lens), free(reward);
    return rc;
}

static int hf_score(Member *m, const Pair *pairs, int64_t n, float *chosen, float *rejected) {
    HfMember *h = m->impl;
    int64_t n_seq = 2 * n;
    I32Vec *seqs = xcalloc((size_t)n_seq, sizeof(I32Vec));
    SeqRef *order = xmalloc(sizeof(SeqRef) * (size_t)(n_seq ? n_seq : 1));
    int rc = 0;
    int64_t truncated_before = h->n_truncated, folded_before = h->n_folded;
    for (int64_t s = 0; s < n_seq && rc == 0; s++) {
        rc = render_fit(h, m, &pairs[s / 2], (int)(s % 2), &seqs[s]);
        order[s].idx = s;
        order[s].len = (int)seqs[s].len;
    }
    if (rc == 0 && model_config(h->model)->reward_head != RHEAD_ARMO) {
        rc = score_packed(h, m, seqs, n_seq, chosen, rejected);
    } else if (rc == 0) {
        qsort(order, (size_t)n_seq, sizeof(SeqRef), cmp_len);
        rc = score_padded(h, m, seqs, order, n_seq, chosen, rejected);
    }
    /* Chosen and rejected identical after truncation: a tie by construction (the two were scored in
     * different batches, whose rounding may differ in the last bits, which would decide the vote). */
    int64_t ties = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        const I32Vec *c = &seqs[2 * i], *r = &seqs[2 * i + 1];
        if (c->len != r->len || memcmp(c->data, r->data, sizeof(int32_t) * c->len)) continue;
        rejected[i] = chosen[i];
        ties++;
    }
    if (ties)
        quorum_warn("%s: %lld of %lld pairs are identical after truncation to max_length %d: scored as ties",
                    m->cfg.name, (long long)ties, (long long)n, m->cfg.max_length);
    if (h->n_truncated > truncated_before)
        quorum_warn("%s: %lld of %lld sequences longer than max_length %d were truncated", m->cfg.name,
                    (long long)(h->n_truncated - truncated_before), (long long)n_seq, m->cfg.max_length);
    if (h->n_folded > folded_before)
        quorum_warn("%s: %lld of %lld pairs have system turns the %s template has no role for: folded into the next "
                    "user turn", m->cfg.name, (long long)(h->n_folded - folded_before), (long long)n,
                    chat_family_name(chat_template_family(h->ct)));
    for (int64_t s = 0; s < n_seq; s++) free(seqs[s].data);
    free(seqs); free(order);
    return rc;
}

static void hf_close(Member *m) {
    HfMember *h = m->impl;
    if (!h) return;
    if (h->model) model_free(h->model);
    if (h->ct) chat_template_free(h->ct);
    if (h->tok) tokenizer_free(h->tok);
    free(h);
    m->impl = NULL;
}

/* Load-time checks that would otherwise surface mid-shard as a vague batch error: every token id the
 * tokenizer can produce has an embedding row, and (GPT-2: learned positions) max_length fits. */
static int hf_check_fit(HfMember *h, const JobMember *cfg) {
    const ModelConfig *c = model_config(h->model);
    char where[1200];
    snprintf(where, sizeof where, "%s/config.json", cfg->path);
    int n_tok = tokenizer_vocab_size(h->tok);
    if (n_tok > c->vocab_size)
        return quorum_input_error(where, "vocab_size %d is smaller than the tokenizer's %d ids (tokenizer.json): "
                                  "committee member %s has a tokenizer of another model", c->vocab_size, n_tok, cfg->name);
    if (c->arch == ARCH_GPT2 && cfg->max_length > c->max_pos)
        return quorum_input_error(where, "n_positions %d is less than committee member %s's max_length %d: set "
                                  "\"max_length\" <= %d in the job", c->max_pos, cfg->name, cfg->max_length, c->max_pos);
    if (cfg->max_length > c->max_pos)
        quorum_warn("%s: max_length %d exceeds max_position_embeddings %d (%s): long sequences go past what the "
                    "model was trained on", cfg->name, cfg->max_length, c->max_pos, where);
    return 0;
}

int member_hf_open_template(Member *m, const JobMember *cfg) {
    HfMember *h = xcalloc(1, sizeof(HfMember));
    m->cfg = *cfg;
    m->impl = h;
    m->check = hf_check;
    m->close = hf_close;
    if (!(h->tok = tokenizer_load(cfg->path)) || !(h->ct = chat_template_load(cfg->path, h->tok))) {
        hf_close(m);
        return -1;
    }
    return 0;
}

int member_hf_open(Member *m, const JobMember *cfg) {
    if (member_hf_open_template(m, cfg) != 0) return -1;
    HfMember *h = m->impl;
    m->score = hf_score;
    ModelLoadOpts lo = {.inference = 1}; /* scoring only: weights as stored (bf16 stays bf16), no gradients,
                                            activations reused across layers */
    if (model_load_ex(&h->model, cfg->path, backend_auto(), &lo) != 0) {
        hf_close(m);
        return -1;
    }
    if (hf_check_fit(h, cfg) != 0) {
        hf_close(m);
        return -1;
    }
    if (model_config(h->model)->head != HEAD_REWARD) {
        char where[1100];
        snprintf(where, sizeof where, "%s/config.json: architectures", cfg->path);
        hf_close(m);
        return quorum_input_error(where, "committee member %s is not a *ForSequenceClassification reward model", cfg->name);
    }
    return 0;
}
