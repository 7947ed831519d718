/* data.c - preference pairs from corpus folders (manifest + HDF5 shards), rendered with the model's chat
 * template and tokenized into TokPairs. Every rank loads the same pairs in the same order (corpus order,
 * shard order, pair order), so the data order is a function of the seed alone. A pair that cannot be
 * rendered (e.g. invalid UTF-8) is skipped with one line naming it. */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/corpus.h"
#include "quorum/tokenizer.h"
#include "quorum/train.h"

#include <stdlib.h>
#include <string.h>

/* Renders turns + response; on success *prompt_len ids of *ids are the prompt. */
static int render(const ChatTemplate *ct, const Tokenizer *t, const Pair *p, const char *resp, int64_t len,
                  I32Vec *ids, int *prompt_len) {
    ids->len = 0;
    int folded; /* system turns a template has no role for: the committee's fold rule (quorum/tokenizer.h) */
    return chat_render_folded(ct, t, p->turns, p->n_turns, resp, (size_t)len, ids, prompt_len, &folded);
}

static int load_one(TokPairs *out, const char *dir, const Tokenizer *t, const ChatTemplate *ct,
                    const PairsLoadCfg *c, int64_t *seen, int64_t *skipped) {
    CorpusManifest man;
    if (corpus_manifest_read(&man, dir)) return -1;
    I32Vec ic = {0}, ir = {0};
    int rc = 0;
    for (int64_t k = 0; k < man.n_shards && !rc; k++) {
        char *sp = shard_path(dir, k);
        Shard s;
        if (shard_read(&s, sp)) { free(sp); rc = -1; break; }
        for (int64_t i = 0; i < s.n; i++) {
            int64_t g = (*seen)++;
            if (c->slice_K > 1 && g % c->slice_K != c->slice_k) continue;
            Pair p;
            shard_get_pair(&s, i, &p);
            int plc, plr;
            int64_t lc, lr;
            const char *rc_text = pair_response(&p, 0, &lc), *rr_text = pair_response(&p, 1, &lr);
            if (render(ct, t, &p, rc_text, lc, &ic, &plc) ||
                render(ct, t, &p, rr_text, lr, &ir, &plr) || plc != plr ||
                memcmp(ic.data, ir.data, plc * sizeof(int32_t))) {
                char where[1400];
                snprintf(where, sizeof where, "%s:%lld:chosen/rejected", sp, (long long)p.id);
                quorum_input_error(where, "pair cannot be rendered with the chat template; skipped");
                (*skipped)++;
                continue;
            }
            if ((int64_t)ic.len == plc || (int64_t)ir.len == plc) { (*skipped)++; continue; } /* empty response */
            tokpairs_push(out, p.id, ic.data, plc, ic.data + plc, (int)ic.len - plc, ir.data + plc,
                          (int)ir.len - plc, c->max_length, c->max_prompt_length);
        }
        shard_free(&s);
        free(sp);
    }
    i32vec_free(&ic);
    i32vec_free(&ir);
    corpus_manifest_free(&man);
    return rc;
}

int pairs_load(TokPairs *out, const PairsLoadCfg *c) {
    memset(out, 0, sizeof *out);
    Tokenizer *t = tokenizer_load(c->model_dir);
    if (!t) return -1;
    ChatTemplate *ct = chat_template_load(c->model_dir, t);
    if (!ct) { tokenizer_free(t); return -1; }
    int64_t seen = 0, skipped = 0;
    int rc = 0;
    char *dirs = xstrdup(c->corpus_dirs), *save = NULL;
    for (char *d = strtok_r(dirs, ",", &save); d && !rc; d = strtok_r(NULL, ",", &save)) rc = load_one(out, d, t, ct, c, &seen, &skipped);
    free(dirs);
    if (!rc && out->n == 0) rc = quorum_input_error(c->corpus_dirs, "no usable pairs (slice %d/%d)", c->slice_k, c->slice_K);
    if (!rc)
        quorum_log("data: %lld pairs (%lld skipped) from %s, %s chat template, %lld tokens", (long long)out->n,
                   (long long)skipped, c->corpus_dirs, chat_family_name(chat_template_family(ct)), (long long)out->n_ids);
    chat_template_free(ct);
    tokenizer_free(t);
    return rc;
}
