/* chat.c - chat templates: the Jinja templates quorum knows, rendered by hand (see quorum/tokenizer.h). */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tokenizer_internal.h"
#include "unicode_tables.h"

/* FNV-1a 64 of the exact chat_template text of each supported family. */
static const struct { uint64_t hash; ChatFamily fam; const char *what; } KNOWN[] = {
    {0x74891e390e614ae2ULL, CHAT_LLAMA3, "Llama-3 Instruct"},
    {0x2bfdb7aa9754484eULL, CHAT_CHATML, "Qwen3 ChatML"},
    {0x8c734b90b4f8d84dULL, CHAT_MISTRAL, "Mistral-7B-Instruct v0.1/v0.2"},
    {0x70f3cded3fb90051ULL, CHAT_GEMMA, "Gemma / Gemma-2 instruct"},
};

struct ChatTemplate {
    ChatFamily fam;
    char *file, *bos_text, *eos_text;
    int add_bos;
};

const char *chat_family_name(ChatFamily f) {
    static const char *names[] = {"hh", "llama3", "chatml", "mistral", "gemma"};
    return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "?";
}
ChatFamily chat_template_family(const ChatTemplate *ct) { return ct->fam; }

static char *config_text(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return xstrdup(cJSON_IsString(v) ? v->valuestring : "");
}

ChatTemplate *chat_template_load(const char *dir, const Tokenizer *t) {
    ChatTemplate *ct = xcalloc(1, sizeof *ct);
    ct->file = path_join(dir, "tokenizer_config.json");
    ct->fam = CHAT_HH;
    cJSON *cfg = NULL;
    int ok = 1;
    if (file_exists(ct->file)) {
        size_t n;
        const char *err;
        char *s = file_read_all(ct->file, &n, &err);
        cfg = s ? cJSON_ParseWithLength(s, n) : NULL;
        if (!cfg) ok = quorum_input_error(ct->file, "%s", s ? "not valid JSON" : err) == 0;
        free(s);
    }
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    char where[1100];
    snprintf(where, sizeof where, "%s:chat_template", ct->file);
    if (ok && tpl && !cJSON_IsNull(tpl)) {
        ok = 0;
        if (!cJSON_IsString(tpl)) {
            quorum_input_error(where, "only a single template string is supported (not a list of named templates)");
        } else {
            uint64_t h = fnv1a64(tpl->valuestring, strlen(tpl->valuestring), FNV1A64_INIT);
            for (size_t k = 0; k < sizeof KNOWN / sizeof KNOWN[0]; k++)
                if (KNOWN[k].hash == h) { ct->fam = KNOWN[k].fam; ok = 1; }
            if (!ok)
                quorum_input_error(where, "unknown chat template (fnv1a64 %016llx); supported: Llama-3 Instruct, Qwen3 "
                                   "ChatML, Mistral Instruct v0.1/v0.2, Gemma / Gemma-2 instruct, or none (HH transcript)", (unsigned long long)h);
        }
    }
    if (ok) {
        ct->bos_text = config_text(cfg, "bos_token");
        ct->eos_text = config_text(cfg, "eos_token");
        ct->add_bos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token"));
        if (ct->fam != CHAT_HH && ct->fam != CHAT_CHATML && (tokenizer_token_id(t, ct->bos_text) < 0 || tokenizer_token_id(t, ct->eos_text) < 0))
            ok = quorum_input_error(where, "the template needs bos_token and eos_token that the tokenizer knows") == 0;
    }
    cJSON_Delete(cfg);
    if (!ok) { chat_template_free(ct); return NULL; }
    return ct;
}

void chat_template_free(ChatTemplate *ct) {
    if (!ct) return;
    free(ct->file); free(ct->bos_text); free(ct->eos_text);
    free(ct);
}

/* ---- rendering ---- */

static const char *role_name(Role r) { return r == ROLE_SYSTEM ? "system" : r == ROLE_USER ? "user" : "assistant"; }

static int py_space(uint32_t cp) { return uni_class(cp) == UNI_WS || (cp >= 0x1C && cp <= 0x1F); }

/* Jinja's |trim (Python str.strip()): appends s without leading/trailing whitespace. */
static void append_trimmed(Buf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t cp;
        int k = utf8_decode(u + lo, hi - lo, &cp);
        if (!py_space(cp)) break;
        lo += k;
    }
    while (hi > lo) { /* step back one code point */
        size_t k = hi - 1;
        while (k > lo && (u[k] & 0xC0) == 0x80) k--;
        uint32_t cp;
        utf8_decode(u + k, hi - k, &cp);
        if (!py_space(cp)) break;
        hi = k;
    }
    buf_append(b, s + lo, hi - lo);
}

static int contains(const char *s, size_t n, const char *needle) { return memmem(s, n, needle, strlen(needle)) != NULL; }

static int render_llama3(const ChatTemplate *ct, const Turn *turns, int n, const char *resp, size_t rn, Buf *p, Buf *r) {
    buf_append_str(p, ct->bos_text);
    for (int i = 0; i < n; i++) {
        buf_appendf(p, "<|start_header_id|>%s<|end_header_id|>\n\n", role_name(turns[i].role));
        append_trimmed(p, turns[i].text, (size_t)turns[i].len);
        buf_append_str(p, "<|eot_id|>");
    }
    buf_append_str(p, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    append_trimmed(r, resp, rn);
    /* this template writes the generation header unconditionally, so it also ends every full dialogue */
    buf_append_str(r, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

static int render_chatml(const ChatTemplate *ct, const Turn *turns, int n, const char *resp, size_t rn, Buf *p, Buf *r) {
    (void)ct;
    for (int i = 0; i < n; i++) {
        const Turn *u = &turns[i];
        if (u->role == ROLE_ASSISTANT && contains(u->text, u->len, "</think>"))
            return quorum_input_error("chat:turn:text", "assistant turn %d holds </think>: reasoning turns are not supported", i);
        buf_appendf(p, "<|im_start|>%s\n", role_name(u->role)); /* a later system turn renders the same */
        buf_append(p, u->text, (size_t)u->len);
        buf_append_str(p, "<|im_end|>\n");
    }
    const Turn *last = &turns[n - 1];
    if (contains(last->text, last->len, "<tool_response>"))
        return quorum_input_error("chat:turn:text", "the last user turn is a tool response; not supported");
    if (contains(resp, rn, "</think>"))
        return quorum_input_error("chat:response", "the response holds </think>: reasoning responses are not supported");
    buf_append_str(p, "<|im_start|>assistant\n<think>\n\n</think>\n\n"); /* enable_thinking=False */
    while (rn && *resp == '\n') { resp++; rn--; }                      /* content.lstrip('\n') */
    buf_append(r, resp, rn);
    buf_append_str(r, "<|im_end|>\n");
    return 0;
}

static int render_mistral(const ChatTemplate *ct, const Turn *turns, int n, const char *resp, size_t rn, Buf *p, Buf *r) {
    buf_append_str(p, ct->bos_text);
    for (int i = 0; i < n; i++) {
        if (turns[i].role != (i % 2 ? ROLE_ASSISTANT : ROLE_USER))
            return quorum_input_error("chat:turn:role", "turn %d: the Mistral template needs user/assistant/user/... turns", i);
        if (turns[i].role == ROLE_USER) buf_append_str(p, "[INST] ");
        buf_append(p, turns[i].text, (size_t)turns[i].len);
        buf_append_str(p, turns[i].role == ROLE_USER ? " [/INST]" : ct->eos_text);
    }
    buf_append(r, resp, rn);
    buf_append_str(r, ct->eos_text);
    return 0;
}

/* Gemma's template: no system role (a first system turn raises), strict user/model alternation, the
 * assistant named "model", every text |trim'med. */
static int render_gemma(const ChatTemplate *ct, const Turn *turns, int n, const char *resp, size_t rn, Buf *p, Buf *r) {
    if (turns[0].role == ROLE_SYSTEM)
        return quorum_input_error("chat:turn:role", "turn 0: the Gemma template has no system role");
    buf_append_str(p, ct->bos_text);
    for (int i = 0; i < n; i++) {
        if ((turns[i].role == ROLE_USER) != (i % 2 == 0))
            return quorum_input_error("chat:turn:role", "turn %d: the Gemma template needs user/assistant/user/... turns", i);
        buf_appendf(p, "<start_of_turn>%s\n", turns[i].role == ROLE_ASSISTANT ? "model" : role_name(turns[i].role));
        append_trimmed(p, turns[i].text, (size_t)turns[i].len);
        buf_append_str(p, "<end_of_turn>\n");
    }
    buf_append_str(p, "<start_of_turn>model\n");
    append_trimmed(r, resp, rn);
    buf_append_str(r, "<end_of_turn>\n");
    return 0;
}

static int render_hh(const ChatTemplate *ct, const Turn *turns, int n, const char *resp, size_t rn, Buf *p, Buf *r) {
    (void)ct;
    for (int i = 0; i < n; i++) {
        if (turns[i].role == ROLE_SYSTEM)
            return quorum_input_error("chat:turn:role", "turn %d: the HH transcript has no system role", i);
        buf_append_str(p, turns[i].role == ROLE_USER ? "\n\nHuman: " : "\n\nAssistant: ");
        buf_append(p, turns[i].text, (size_t)turns[i].len);
    }
    buf_append_str(p, "\n\nAssistant:");
    buf_append_str(r, " ");
    buf_append(r, resp, rn);
    return 0;
}

int chat_render_text(const ChatTemplate *ct, const Turn *turns, int n_turns, const char *response,
                     size_t response_len, Buf *prompt, Buf *resp) {
    if (n_turns < 1 || turns[n_turns - 1].role != ROLE_USER)
        return quorum_input_error("chat:turns", "a dialogue to respond to must end with a user turn (%d turns)", n_turns);
    static int (*const render[])(const ChatTemplate *, const Turn *, int, const char *, size_t, Buf *, Buf *) = {
        render_hh, render_llama3, render_chatml, render_mistral, render_gemma};
    return render[ct->fam](ct, turns, n_turns, response, response_len, prompt, resp);
}

int chat_fold_turns(const ChatTemplate *ct, const Turn *in, int n, Turn *out, Buf *scratch, int *n_folded) {
    int fold = ct->fam == CHAT_HH || ct->fam == CHAT_MISTRAL || ct->fam == CHAT_GEMMA, k = 0, pending = -1; /* first unfolded system turn */
    size_t need = 0;
    for (int i = 0; i < n; i++) need += (size_t)in[i].len + 2;
    buf_reserve(scratch, need + 1); /* no realloc below: views into scratch stay valid */
    *n_folded = 0;
    for (int i = 0; i < n; i++) {
        Turn t = in[i];
        if (t.role == ROLE_OBSERVATION) t.role = ROLE_USER;
        if (t.role == ROLE_FUNCTION_CALL) t.role = ROLE_ASSISTANT;
        if (fold && t.role == ROLE_SYSTEM) {
            if (pending < 0) pending = i;
            continue;
        }
        if (pending >= 0 && t.role == ROLE_USER) {
            char *at = scratch->data + scratch->len;
            for (int j = pending; j < i; j++) {
                buf_append(scratch, in[j].text, (size_t)in[j].len);
                buf_append(scratch, "\n\n", 2);
                (*n_folded)++;
            }
            buf_append(scratch, t.text, (size_t)t.len);
            t.text = at;
            t.len = (int64_t)(scratch->data + scratch->len - at);
            pending = -1;
        } else if (pending >= 0) { /* no user turn right after: the system turns stay (the template refuses them) */
            for (int j = pending; j < i; j++) out[k++] = in[j];
            pending = -1;
        }
        out[k++] = t;
    }
    for (int j = pending; pending >= 0 && j < n; j++) out[k++] = in[j];
    return k;
}

int chat_render(const ChatTemplate *ct, const Tokenizer *t, const Turn *turns, int n_turns,
                const char *response, size_t response_len, I32Vec *ids, int *prompt_len) {
    Buf p = {0}, r = {0};
    size_t start = ids->len;
    int rc = chat_render_text(ct, turns, n_turns, response, response_len, &p, &r);
    if (!rc && ct->fam == CHAT_HH && ct->add_bos && t->bos >= 0) i32vec_push(ids, t->bos);
    if (!rc) rc = tokenizer_encode(t, p.data ? p.data : "", p.len, ids);
    size_t plen = ids->len - start;
    if (!rc) rc = tokenizer_encode(t, r.data ? r.data : "", r.len, ids);
    if (rc) ids->len = start;
    else *prompt_len = (int)plen;
    buf_free(&p);
    buf_free(&r);
    return rc;
}

int chat_render_folded(const ChatTemplate *ct, const Tokenizer *t, const Turn *turns, int n_turns,
                       const char *response, size_t response_len, I32Vec *ids, int *prompt_len, int *n_folded) {
    Turn *folded = xmalloc(sizeof(Turn) * (size_t)(n_turns + 1));
    Buf scratch = {0};
    int n = chat_fold_turns(ct, turns, n_turns, folded, &scratch, n_folded);
    int rc = chat_render(ct, t, folded, n, response, response_len, ids, prompt_len);
    free(folded);
    buf_free(&scratch);
    return rc;
}
