/* tokenizer.c - loading tokenizer.json (+ tokenizer_config.json) into a Tokenizer; its small maps. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "tokenizer_internal.h"
#include "unicode_tables.h"

void i32vec_push(I32Vec *v, int32_t x) {
    if (v->len == v->cap) { v->cap = v->cap ? 2 * v->cap : 256; v->data = xrealloc(v->data, v->cap * sizeof(int32_t)); }
    v->data[v->len++] = x;
}
void i32vec_free(I32Vec *v) { free(v->data); v->data = NULL; v->len = v->cap = 0; }

/* ---- StrMap ---- */

static uint64_t hash_bytes(const char *k, size_t len) { return fnv1a64(k, len, FNV1A64_INIT); }

void strmap_init(StrMap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = 64;
    while (m->cap < 2 * expected) m->cap *= 2;
    m->slot = xcalloc(m->cap, sizeof(uint32_t));
}

void strmap_free(StrMap *m) {
    free(m->slot); free(m->key_off); free(m->key_len); free(m->val); free(m->val2);
    buf_free(&m->arena);
    memset(m, 0, sizeof *m);
}

int64_t strmap_find(const StrMap *m, const char *k, size_t len) {
    size_t i = hash_bytes(k, len) & (m->cap - 1);
    for (;; i = (i + 1) & (m->cap - 1)) {
        uint32_t s = m->slot[i];
        if (!s) return -1;
        size_t e = s - 1;
        if ((size_t)m->key_len[e] == len && memcmp(m->arena.data + m->key_off[e], k, len) == 0) return (int64_t)e;
    }
}

static void strmap_place(StrMap *m, size_t e) {
    size_t i = hash_bytes(m->arena.data + m->key_off[e], m->key_len[e]) & (m->cap - 1);
    while (m->slot[i]) i = (i + 1) & (m->cap - 1);
    m->slot[i] = (uint32_t)(e + 1);
}

int64_t strmap_insert(StrMap *m, const char *k, size_t len, int32_t val, int32_t val2) {
    if (m->n == m->n_cap) {
        m->n_cap = m->n_cap ? 2 * m->n_cap : 1024;
        m->key_off = xrealloc(m->key_off, m->n_cap * sizeof(int64_t));
        m->key_len = xrealloc(m->key_len, m->n_cap * sizeof(int32_t));
        m->val = xrealloc(m->val, m->n_cap * sizeof(int32_t));
        m->val2 = xrealloc(m->val2, m->n_cap * sizeof(int32_t));
    }
    size_t e = m->n++;
    m->key_off[e] = (int64_t)m->arena.len;
    m->key_len[e] = (int32_t)len;
    m->val[e] = val; m->val2[e] = val2;
    buf_append(&m->arena, k, len);
    if (2 * m->n > m->cap) { /* grow: keep the load factor under 1/2 */
        free(m->slot);
        m->cap *= 2;
        m->slot = xcalloc(m->cap, sizeof(uint32_t));
        for (size_t j = 0; j < m->n; j++) strmap_place(m, j);
    } else {
        strmap_place(m, e);
    }
    return (int64_t)e;
}

/* ---- MergeMap ---- */

static size_t merge_slot(const MergeMap *m, uint64_t key) {
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & (m->cap - 1);
    while (m->key[i] && m->key[i] != key) i = (i + 1) & (m->cap - 1);
    return i;
}

int merge_find(const MergeMap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged) {
    if (!m->cap) return 0;
    size_t i = merge_slot(m, ((uint64_t)(a + 1) << 32) | (uint32_t)b);
    if (!m->key[i]) return 0;
    *rank = m->rank[i]; *merged = m->merged[i];
    return 1;
}

/* First occurrence of a pair wins (HF keeps the lowest rank). */
static void merge_insert(MergeMap *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(a + 1) << 32) | (uint32_t)b;
    size_t i = merge_slot(m, key);
    if (m->key[i]) return;
    m->key[i] = key; m->rank[i] = rank; m->merged[i] = merged;
}

/* ---- byte-level alphabet (GPT-2's bytes_to_unicode) ---- */

static int byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174); }

/* The code point -> byte inverse of bytes_to_unicode; -1 for a code point outside the alphabet.
 * Printable bytes map to themselves, the other 68 to U+0100.. in byte order. */
static short byte_of_cp[512];
static pthread_once_t byte_of_cp_once = PTHREAD_ONCE_INIT;

static void byte_of_cp_init(void) {
    int next = 256;
    for (int c = 0; c < 512; c++) byte_of_cp[c] = -1;
    for (int b = 0; b < 256; b++) byte_of_cp[byte_is_printable(b) ? b : next++] = (short)b;
}

static int unicode_to_byte(uint32_t cp) {
    pthread_once(&byte_of_cp_once, byte_of_cp_init);
    return cp < 512 ? byte_of_cp[cp] : -1;
}

/* Byte-level token text -> raw bytes into *out; -1 when a character is outside the alphabet. */
static int byte_level_unmap(const char *s, size_t n, Buf *out) {
    out->len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int b = unicode_to_byte(cp);
        if (b < 0) return -1;
        char c = (char)b;
        buf_append(out, &c, 1);
    }
    return 0;
}

/* ---- load ---- */

typedef struct {
    const char *file;
    char where[512];
} LoadCtx;

static int load_error(LoadCtx *c, const char *key, const char *msg) {
    snprintf(c->where, sizeof c->where, "%s:%s", c->file, key);
    return quorum_input_error(c->where, "%s", msg);
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static int json_is(const cJSON *o, const char *key, const char *want) {
    const char *s = json_str(o, key);
    return s && strcmp(s, want) == 0;
}
static int json_true(const cJSON *o, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key)); }
static int json_null(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v);
}
static int json_null_or_empty(const cJSON *o, const char *key) {
    const char *s = json_str(o, key);
    return json_null(o, key) || (s && !*s);
}

static const char PAT_LLAMA3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char PAT_QWEN2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int is_byte_level(const cJSON *o, int use_regex) {
    return json_is(o, "type", "ByteLevel") && !json_true(o, "add_prefix_space") &&
           (json_true(o, "use_regex") == use_regex);
}

static int parse_normalizer(LoadCtx *c, const cJSON *n, Tokenizer *t) {
    if (!n || cJSON_IsNull(n)) return 0;
    if (json_is(n, "type", "NFC")) { t->nfc = 1; return 0; }
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    if (json_is(n, "type", "Sequence") && cJSON_GetArraySize(seq) == 2) {
        const cJSON *p = cJSON_GetArrayItem(seq, 0), *r = cJSON_GetArrayItem(seq, 1);
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(r, "pattern");
        if (json_is(p, "type", "Prepend") && json_is(p, "prepend", "\xE2\x96\x81") && json_is(r, "type", "Replace") &&
            json_is(pat, "String", " ") && json_is(r, "content", "\xE2\x96\x81")) {
            t->spm = t->spm_prepend = 1;
            return 0;
        }
    }
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern"); /* Gemma: Replace alone */
    if (json_is(n, "type", "Replace") && json_is(pat, "String", " ") && json_is(n, "content", "\xE2\x96\x81")) {
        t->spm = 1;
        return 0;
    }
    return load_error(c, "normalizer", "unsupported normalizer (supported: null, NFC, Sequence[Prepend U+2581, Replace ' ' -> U+2581], "
                      "Replace ' ' -> U+2581)");
}

static int parse_pre_tokenizer(LoadCtx *c, const cJSON *p, Tokenizer *t) {
    if (!p || cJSON_IsNull(p)) { t->pre = PRE_NONE; return 0; }
    if (is_byte_level(p, 1)) { t->pre = PRE_GPT2; return 0; }
    /* Gemma: Split on ' ' after a normalizer that left no ' ': a no-op, the segment stays one word */
    if (t->spm && json_is(p, "type", "Split") && json_is(cJSON_GetObjectItemCaseSensitive(p, "pattern"), "String", " ") &&
        json_is(p, "behavior", "MergedWithPrevious") && !json_true(p, "invert")) {
        t->pre = PRE_NONE;
        return 0;
    }
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    if (json_is(p, "type", "Sequence") && cJSON_GetArraySize(seq) == 2) {
        const cJSON *s = cJSON_GetArrayItem(seq, 0), *b = cJSON_GetArrayItem(seq, 1);
        const char *re = json_str(cJSON_GetObjectItemCaseSensitive(s, "pattern"), "Regex");
        if (json_is(s, "type", "Split") && json_is(s, "behavior", "Isolated") && !json_true(s, "invert") && re &&
            is_byte_level(b, 0)) {
            if (strcmp(re, PAT_LLAMA3) == 0) { t->pre = PRE_LLAMA3; return 0; }
            if (strcmp(re, PAT_QWEN2) == 0) { t->pre = PRE_QWEN2; return 0; }
            return load_error(c, "pre_tokenizer.pretokenizers[0].pattern", "unsupported Split regex (supported: the Llama-3 and Qwen2 patterns)");
        }
    }
    return load_error(c, "pre_tokenizer", "unsupported pre_tokenizer (supported: ByteLevel with the GPT-2 regex, Sequence[Split(Llama-3/Qwen2), ByteLevel])");
}

static int parse_decoder(LoadCtx *c, const cJSON *d, Tokenizer *t) {
    if (json_is(d, "type", "ByteLevel")) {
        if (!t->byte_level) return load_error(c, "decoder", "ByteLevel decoder without a ByteLevel pre_tokenizer");
        return 0;
    }
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(d, "decoders");
    int nd = t->spm_prepend ? 4 : 3; /* Gemma: no Strip, it has no Prepend to undo */
    if (json_is(d, "type", "Sequence") && cJSON_GetArraySize(seq) == nd && t->spm) {
        const cJSON *r = cJSON_GetArrayItem(seq, 0), *s = cJSON_GetArrayItem(seq, 3);
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(r, "pattern");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(s, "start"), *stop = cJSON_GetObjectItemCaseSensitive(s, "stop");
        if (json_is(r, "type", "Replace") && json_is(pat, "String", "\xE2\x96\x81") && json_is(r, "content", " ") &&
            json_is(cJSON_GetArrayItem(seq, 1), "type", "ByteFallback") && json_is(cJSON_GetArrayItem(seq, 2), "type", "Fuse") &&
            (nd == 3 || (json_is(s, "type", "Strip") && json_is(s, "content", " ") && cJSON_IsNumber(start) &&
                         start->valueint == 1 && cJSON_IsNumber(stop) && stop->valueint == 0)))
            return 0;
    }
    return load_error(c, "decoder", "unsupported decoder (supported: ByteLevel, Sequence[Replace U+2581 -> ' ', ByteFallback, Fuse, "
                      "Strip(' ', 1, 0)] after a Prepend normalizer, the same without Strip otherwise)");
}

/* Sets token id -> text, growing the id table geometrically (ids arrive mostly in order). */
static void set_token_text(Tokenizer *t, int32_t id, const char *s, size_t n, int added) {
    if (id >= t->tok_cap) {
        int old = t->tok_cap, cap = id + 1 > 2 * old ? id + 1 : 2 * old;
        t->tok_off = xrealloc(t->tok_off, cap * sizeof(int64_t));
        t->tok_len = xrealloc(t->tok_len, cap * sizeof(int32_t));
        t->is_added = xrealloc(t->is_added, cap);
        for (int i = old; i < cap; i++) { t->tok_off[i] = 0; t->tok_len[i] = -1; t->is_added[i] = 0; }
        t->tok_cap = cap;
    }
    if (id >= t->vocab_size) t->vocab_size = id + 1;
    t->tok_off[id] = (int64_t)t->tok_text.len;
    t->tok_len[id] = (int32_t)n;
    t->is_added[id] = (unsigned char)added;
    buf_append(&t->tok_text, s, n);
}

static int parse_vocab(LoadCtx *c, const cJSON *model, Tokenizer *t) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return load_error(c, "model.vocab", "missing or not an object");
    strmap_init(&t->vocab, (size_t)cJSON_GetArraySize(vocab));
    Buf raw = {0};
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 16777216)
            { buf_free(&raw); return load_error(c, "model.vocab", "token id is not a small non-negative integer"); }
        const char *k = e->string;
        size_t kn = strlen(k);
        if (t->byte_level) {
            if (byte_level_unmap(k, kn, &raw)) { buf_free(&raw); return load_error(c, "model.vocab", "token outside the byte-level alphabet"); }
            k = raw.data; kn = raw.len;
        }
        if (strmap_find(&t->vocab, k, kn) >= 0) continue;
        strmap_insert(&t->vocab, k, kn, e->valueint, 0);
        set_token_text(t, e->valueint, k, kn, 0);
    }
    buf_free(&raw);
    return 0;
}

static int vocab_id(const Tokenizer *t, const char *s, size_t n) {
    int64_t e = strmap_find(&t->vocab, s, n);
    return e < 0 ? -1 : t->vocab.val[e];
}

/* One merge: the two halves (as in the file) -> ids of both and of the merged token. */
static int add_merge(LoadCtx *c, Tokenizer *t, const char *a, size_t an, const char *b, size_t bn, int rank, Buf *tmp) {
    int32_t ia, ib, im;
    tmp->len = 0;
    if (t->byte_level) {
        Buf ra = {0};
        int bad = byte_level_unmap(a, an, &ra) || (buf_append(tmp, ra.data, ra.len), byte_level_unmap(b, bn, &ra));
        if (bad) { buf_free(&ra); return load_error(c, "model.merges", "merge outside the byte-level alphabet"); }
        ia = vocab_id(t, tmp->data, tmp->len);
        ib = vocab_id(t, ra.data, ra.len);
        buf_append(tmp, ra.data, ra.len);
        buf_free(&ra);
    } else {
        ia = vocab_id(t, a, an);
        ib = vocab_id(t, b, bn);
        buf_append(tmp, a, an);
        buf_append(tmp, b, bn);
    }
    im = vocab_id(t, tmp->data, tmp->len);
    if (ia < 0 || ib < 0 || im < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "merge %d uses a token that is not in model.vocab", rank);
        return load_error(c, "model.merges", msg);
    }
    merge_insert(&t->merges, ia, ib, rank, im);
    return 0;
}

static int parse_merges(LoadCtx *c, const cJSON *model, Tokenizer *t) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) return load_error(c, "model.merges", "missing or not an array");
    size_t n = (size_t)cJSON_GetArraySize(merges);
    t->merges.cap = 64;
    while (t->merges.cap < 2 * n) t->merges.cap *= 2;
    t->merges.key = xcalloc(t->merges.cap, sizeof(uint64_t));
    t->merges.rank = xmalloc(t->merges.cap * sizeof(int32_t));
    t->merges.merged = xmalloc(t->merges.cap * sizeof(int32_t));
    Buf tmp = {0};
    int rank = 0, rc = 0;
    for (const cJSON *m = merges->child; m && !rc; m = m->next, rank++) {
        if (cJSON_IsString(m)) { /* "a b" */
            const char *sp = strchr(m->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) { rc = load_error(c, "model.merges", "a merge string is not \"left right\""); break; }
            rc = add_merge(c, t, m->valuestring, sp - m->valuestring, sp + 1, strlen(sp + 1), rank, &tmp);
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            const char *a = m->child->valuestring, *b = m->child->next->valuestring;
            rc = add_merge(c, t, a, strlen(a), b, strlen(b), rank, &tmp);
        } else {
            rc = load_error(c, "model.merges", "a merge is neither \"left right\" nor [\"left\", \"right\"]");
        }
    }
    buf_free(&tmp);
    return rc;
}

static int cmp_added(const void *a, const void *b) {
    const AddedToken *x = a, *y = b;
    unsigned char fx = x->len ? (unsigned char)x->text[0] : 0, fy = y->len ? (unsigned char)y->text[0] : 0;
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; /* longest first: leftmost-longest match */
    return x->id < y->id ? -1 : x->id > y->id;
}

static int parse_added(LoadCtx *c, const cJSON *root, Tokenizer *t) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (arr && !cJSON_IsArray(arr)) return load_error(c, "added_tokens", "not an array");
    t->added = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(AddedToken));
    for (const cJSON *a = arr ? arr->child : NULL; a; a = a->next) {
        const char *s = json_str(a, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!s || !*s || !cJSON_IsNumber(id) || id->valueint < 0) return load_error(c, "added_tokens", "an entry lacks content or id");
        if (json_true(a, "lstrip") || json_true(a, "rstrip") || json_true(a, "single_word"))
            return load_error(c, "added_tokens", "lstrip/rstrip/single_word added tokens are not supported");
        if (json_true(a, "normalized") && (t->nfc || t->spm))
            return load_error(c, "added_tokens", "normalized added tokens with a normalizer are not supported");
        AddedToken *at = &t->added[t->n_added++];
        at->text = xstrdup(s); at->len = strlen(s); at->id = id->valueint;
        set_token_text(t, at->id, s, at->len, 1);
    }
    qsort(t->added, t->n_added, sizeof(AddedToken), cmp_added);
    int k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < t->n_added && (unsigned char)t->added[k].text[0] < b) k++;
        t->first_added[b] = k;
    }
    return 0;
}

static int parse_bytes(LoadCtx *c, Tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char name[8], ch = (char)b;
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = t->byte_level ? vocab_id(t, &ch, 1) : (t->byte_fallback ? vocab_id(t, name, 6) : -1);
        if (t->byte_id[b] < 0 && t->byte_level) /* byte_fallback may lack some: those bytes go to unk */
            return load_error(c, "model.vocab", "a byte-level vocab lacks a single-byte token");
    }
    return 0;
}

static int parse_model(LoadCtx *c, const cJSON *root, Tokenizer *t) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!json_is(model, "type", "BPE")) return load_error(c, "model.type", "only BPE models are supported");
    if (!json_null(model, "dropout") || !json_null_or_empty(model, "continuing_subword_prefix") ||
        !json_null_or_empty(model, "end_of_word_suffix"))
        return load_error(c, "model", "dropout / continuing_subword_prefix / end_of_word_suffix are not supported");
    t->ignore_merges = json_true(model, "ignore_merges");
    t->byte_fallback = json_true(model, "byte_fallback");
    t->fuse_unk = json_true(model, "fuse_unk");
    if (parse_vocab(c, model, t) || parse_merges(c, model, t) || parse_bytes(c, t)) return -1;
    const char *unk = json_str(model, "unk_token");
    t->unk = unk ? vocab_id(t, unk, strlen(unk)) : -1;
    if (unk && t->unk < 0) return load_error(c, "model.unk_token", "not in model.vocab");
    return 0;
}

static int32_t config_token(const Tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : json_str(v, "content");
    return s ? tokenizer_token_id(t, s) : -1;
}

static int parse_config(const char *dir, Tokenizer *t) {
    t->bos = t->eos = t->pad = -1;
    char *p = path_join(dir, "tokenizer_config.json");
    int rc = 0;
    if (file_exists(p)) {
        size_t n;
        const char *err;
        char *s = file_read_all(p, &n, &err);
        cJSON *cfg = s ? cJSON_ParseWithLength(s, n) : NULL;
        if (!cfg) rc = quorum_input_error(p, "%s", s ? "not valid JSON" : err);
        else {
            t->bos = config_token(t, cfg, "bos_token");
            t->eos = config_token(t, cfg, "eos_token");
            t->pad = config_token(t, cfg, "pad_token");
            t->add_bos = json_true(cfg, "add_bos_token");
        }
        cJSON_Delete(cfg);
        free(s);
    }
    free(p);
    return rc;
}

static int parse_root(LoadCtx *c, const cJSON *root, Tokenizer *t) {
    if (parse_normalizer(c, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), t) ||
        parse_pre_tokenizer(c, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), t))
        return -1;
    t->byte_level = t->pre != PRE_NONE;
    if (t->byte_level && t->spm) return load_error(c, "normalizer", "a SentencePiece normalizer with a ByteLevel pre_tokenizer");
    if (!t->byte_level && !t->spm) return load_error(c, "pre_tokenizer", "null pre_tokenizer needs the SentencePiece Prepend/Replace normalizer");
    if (parse_decoder(c, cJSON_GetObjectItemCaseSensitive(root, "decoder"), t)) return -1;
    return parse_model(c, root, t) || parse_added(c, root, t) ? -1 : 0;
}

Tokenizer *tokenizer_load(const char *path) {
    struct stat st;
    int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    char *file = is_dir ? path_join(path, "tokenizer.json") : xstrdup(path);
    char *dir = is_dir ? xstrdup(path) : xstrdup(path);
    if (!is_dir) { char *sl = strrchr(dir, '/'); if (sl) *sl = 0; else strcpy(dir, "."); }
    size_t n;
    const char *err;
    char *text = file_read_all(file, &n, &err);
    int read_ok = text != NULL;
    cJSON *root = text ? cJSON_ParseWithLength(text, n) : NULL;
    free(text);
    Tokenizer *t = NULL;
    if (!root) {
        quorum_input_error(file, "%s", read_ok ? "not valid JSON" : err);
    } else {
        t = xcalloc(1, sizeof *t);
        t->path = xstrdup(file);
        LoadCtx c = {.file = file};
        pthread_mutex_init(&t->cache_lock, NULL);
        strmap_init(&t->cache, 1 << 14);
        if (parse_root(&c, root, t) || parse_config(dir, t)) { tokenizer_free(t); t = NULL; }
    }
    cJSON_Delete(root);
    free(file);
    free(dir);
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->path); free(t->tok_off); free(t->tok_len); free(t->is_added); buf_free(&t->tok_text);
    strmap_free(&t->vocab);
    free(t->merges.key); free(t->merges.rank); free(t->merges.merged);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].text);
    free(t->added);
    pthread_mutex_destroy(&t->cache_lock);
    strmap_free(&t->cache);
    free(t->cache_ids);
    free(t);
}

int32_t tokenizer_token_id(const Tokenizer *t, const char *token) {
    size_t n = strlen(token);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].text, token, n) == 0) return t->added[i].id;
    if (!t->byte_level) return vocab_id(t, token, n);
    Buf raw = {0};
    int32_t id = byte_level_unmap(token, n, &raw) ? -1 : vocab_id(t, raw.data, raw.len);
    buf_free(&raw);
    return id;
}

int32_t tokenizer_bos(const Tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const Tokenizer *t) { return t->eos; }
int32_t tokenizer_pad(const Tokenizer *t) { return t->pad; }
int tokenizer_vocab_size(const Tokenizer *t) { return t->vocab_size; }
int tokenizer_add_bos(const Tokenizer *t) { return t->add_bos; }
const char *tokenizer_unicode_version(void) { return uni_version; }
