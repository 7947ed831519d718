/* encode.c - pre-tokenizer scanners, the BPE merge loop, encode and decode. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"
#include "unicode_tables.h"

/* ---- pre-tokenizers: the HF split regexes as scanners (one piece per call, every char in a piece) ----
 * GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *          \s*[\r\n]+|\s+(?!\S)|\s+          (Qwen2: \p{N} instead of \p{N}{1,3}) */

#define IS(j, c) ((j) < n && cls[j] == (c))
#define CRLF(j) ((j) < n && (cp[j] == '\r' || cp[j] == '\n'))

static size_t contraction(const uint32_t *cp, size_t n, size_t i, int icase) {
    if (cp[i] != '\'' || i + 1 >= n) return 0;
    uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
    if (icase) { /* ASCII case folding, as the JS reference rewrites (?i:...) */
        if (a >= 'A' && a <= 'Z') a += 32;
        if (b >= 'A' && b <= 'Z') b += 32;
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

static size_t run_of(const unsigned char *cls, size_t n, size_t j, int c) {
    while (IS(j, c)) j++;
    return j;
}

/* \s+(?!\S) then \s+ for the whitespace run at i: keep the last space for the next piece. */
static size_t whitespace_piece(const unsigned char *cls, size_t n, size_t i) {
    size_t j = run_of(cls, n, i, UNI_WS);
    if (j == n) return n;
    return j - i >= 2 ? j - 1 : i + 1;
}

static size_t gpt2_next(const uint32_t *cp, const unsigned char *cls, size_t n, size_t i) {
    size_t c = contraction(cp, n, i, 0);
    if (c) return i + c;
    size_t s = (cp[i] == ' ' && i + 1 < n) ? i + 1 : i;
    if (IS(s, UNI_L)) return run_of(cls, n, s, UNI_L);
    if (IS(s, UNI_N)) return run_of(cls, n, s, UNI_N);
    if (IS(s, UNI_OTHER)) return run_of(cls, n, s, UNI_OTHER);
    if (IS(i, UNI_WS)) return whitespace_piece(cls, n, i);
    return i + 1;
}

static size_t llama3_next(const uint32_t *cp, const unsigned char *cls, size_t n, size_t i, size_t max_digits) {
    size_t c = contraction(cp, n, i, 1);
    if (c) return i + c;
    if (!CRLF(i) && cls[i] != UNI_L && cls[i] != UNI_N && IS(i + 1, UNI_L)) return run_of(cls, n, i + 1, UNI_L);
    if (IS(i, UNI_L)) return run_of(cls, n, i, UNI_L);
    if (IS(i, UNI_N)) {
        size_t j = i;
        while (IS(j, UNI_N) && j - i < max_digits) j++;
        return j;
    }
    size_t s = cp[i] == ' ' ? i + 1 : i;
    if (IS(s, UNI_OTHER)) {
        size_t j = run_of(cls, n, s, UNI_OTHER);
        while (CRLF(j)) j++;
        return j;
    }
    if (!IS(i, UNI_WS)) return i + 1;
    size_t j = run_of(cls, n, i, UNI_WS), last_nl = j;
    for (size_t k = i; k < j; k++)
        if (CRLF(k)) last_nl = k;
    if (last_nl < j) return last_nl + 1; /* \s*[\r\n]+ */
    return whitespace_piece(cls, n, i);
}

size_t pretok_next(PreKind k, const uint32_t *cp, const unsigned char *cls, size_t n, size_t i) {
    if (k == PRE_GPT2) return gpt2_next(cp, cls, n, i);
    return llama3_next(cp, cls, n, i, k == PRE_LLAMA3 ? 3 : 1);
}

/* ---- BPE: symbols in a linked list, candidate merges in a (rank, position) min-heap ---- */

typedef struct { int32_t rank, pos, merged; } Cand;

typedef struct {
    Cand *h; size_t n, cap;
} Heap;

static int cand_less(Cand a, Cand b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static void heap_push(Heap *q, Cand c) {
    if (q->n == q->cap) { q->cap = q->cap ? 2 * q->cap : 64; q->h = xrealloc(q->h, q->cap * sizeof(Cand)); }
    size_t i = q->n++;
    while (i > 0 && cand_less(c, q->h[(i - 1) / 2])) { q->h[i] = q->h[(i - 1) / 2]; i = (i - 1) / 2; }
    q->h[i] = c;
}

static Cand heap_pop(Heap *q) {
    Cand top = q->h[0], last = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && cand_less(q->h[c + 1], q->h[c])) c++;
        if (!cand_less(q->h[c], last)) break;
        q->h[i] = q->h[c];
        i = c;
    }
    if (q->n) q->h[i] = last;
    return top;
}

typedef struct {
    int32_t *id, *prev, *next;
    size_t n, cap;
} Symbols;

static void sym_push(Symbols *s, int32_t id) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->id = xrealloc(s->id, s->cap * sizeof(int32_t));
        s->prev = xrealloc(s->prev, s->cap * sizeof(int32_t));
        s->next = xrealloc(s->next, s->cap * sizeof(int32_t));
    }
    s->id[s->n] = id;
    s->prev[s->n] = (int32_t)s->n - 1;
    s->next[s->n] = (int32_t)s->n + 1;
    s->n++;
}

static void push_pair(const Tokenizer *t, Heap *q, const Symbols *s, int32_t pos) {
    int32_t rank, merged, nx = s->next[pos];
    if (nx >= 0 && merge_find(&t->merges, s->id[pos], s->id[nx], &rank, &merged))
        heap_push(q, (Cand){rank, pos, merged});
}

/* Initial symbols: bytes (byte-level) or characters with byte fallback (SentencePiece style). */
static void initial_symbols(const Tokenizer *t, const char *s, size_t n, Symbols *sym) {
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++) sym_push(sym, t->byte_id[(unsigned char)s[i]]);
        return;
    }
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t len = utf8_decode((const unsigned char *)s + i, n - i, &c);
        int64_t e = strmap_find(&t->vocab, s + i, len);
        int bytes_ok = t->byte_fallback; /* HF: byte fallback only when every <0xNN> exists (Gemma lacks <0x09>) */
        for (size_t k = 0; bytes_ok && k < len; k++) bytes_ok = t->byte_id[(unsigned char)s[i + k]] >= 0;
        if (e >= 0) sym_push(sym, t->vocab.val[e]);
        else if (bytes_ok)
            for (size_t k = 0; k < len; k++) sym_push(sym, t->byte_id[(unsigned char)s[i + k]]);
        else if (!(t->fuse_unk && sym->n && sym->id[sym->n - 1] == t->unk))
            sym_push(sym, t->unk);
        i += len;
    }
}

static void bpe_merge(const Tokenizer *t, const char *s, size_t n, I32Vec *ids) {
    Symbols sym = {0};
    Heap q = {0};
    initial_symbols(t, s, n, &sym);
    if (sym.n) sym.next[sym.n - 1] = -1;
    for (size_t p = 0; p + 1 < sym.n; p++) push_pair(t, &q, &sym, (int32_t)p);
    while (q.n) {
        Cand c = heap_pop(&q);
        int32_t nx = sym.next[c.pos], rank, merged;
        if (sym.id[c.pos] < -1 || nx < 0) continue; /* merged away, or last symbol */
        if (!merge_find(&t->merges, sym.id[c.pos], sym.id[nx], &rank, &merged) || merged != c.merged) continue;
        sym.id[c.pos] = merged;
        sym.id[nx] = -2; /* dead */
        sym.next[c.pos] = sym.next[nx];
        if (sym.next[nx] >= 0) sym.prev[sym.next[nx]] = c.pos;
        if (sym.prev[c.pos] >= 0) push_pair(t, &q, &sym, sym.prev[c.pos]);
        push_pair(t, &q, &sym, c.pos);
    }
    for (int32_t p = sym.n ? 0 : -1; p >= 0; p = sym.next[p]) i32vec_push(ids, sym.id[p]);
    free(sym.id); free(sym.prev); free(sym.next); free(q.h);
}

enum { CACHE_MAX_KEY = 64, CACHE_MAX_ENTRIES = 1 << 20 };

/* One pre-token -> ids, through the cache. */
void bpe_word(const Tokenizer *t, const char *s, size_t n, I32Vec *ids) {
    if (n == 0) return;
    Tokenizer *mt = (Tokenizer *)t; /* the cache is the one mutable part, under its lock */
    if (n <= CACHE_MAX_KEY) {
        pthread_mutex_lock(&mt->cache_lock);
        int64_t e = strmap_find(&t->cache, s, n);
        if (e >= 0)
            for (int32_t k = 0; k < t->cache.val2[e]; k++) i32vec_push(ids, t->cache_ids[t->cache.val[e] + k]);
        pthread_mutex_unlock(&mt->cache_lock);
        if (e >= 0) return;
    }
    size_t start = ids->len;
    int64_t whole = t->ignore_merges ? strmap_find(&t->vocab, s, n) : -1;
    if (whole >= 0) i32vec_push(ids, t->vocab.val[whole]);
    else bpe_merge(t, s, n, ids);
    if (n > CACHE_MAX_KEY) return;
    size_t cnt = ids->len - start;
    pthread_mutex_lock(&mt->cache_lock);
    if (t->cache.n < CACHE_MAX_ENTRIES && strmap_find(&t->cache, s, n) < 0) {
        if (mt->cache_ids_len + cnt > mt->cache_ids_cap) {
            mt->cache_ids_cap = 2 * (mt->cache_ids_len + cnt) + 1024;
            mt->cache_ids = xrealloc(mt->cache_ids, mt->cache_ids_cap * sizeof(int32_t));
        }
        memcpy(mt->cache_ids + mt->cache_ids_len, ids->data + start, cnt * sizeof(int32_t));
        strmap_insert(&mt->cache, s, n, (int32_t)mt->cache_ids_len, (int32_t)cnt);
        mt->cache_ids_len += cnt;
    }
    pthread_mutex_unlock(&mt->cache_lock);
}

/* ---- encode ---- */

static void pretokenize(const Tokenizer *t, const char *s, size_t n, I32Vec *ids) {
    uint32_t *cp = xmalloc((n + 1) * sizeof(uint32_t));
    size_t *off = xmalloc((n + 1) * sizeof(size_t));
    unsigned char *cls = xmalloc(n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; m++) {
        off[m] = i;
        i += utf8_decode((const unsigned char *)s + i, n - i, &cp[m]);
        cls[m] = (unsigned char)uni_class(cp[m]);
    }
    off[m] = n;
    for (size_t i = 0; i < m;) {
        size_t j = pretok_next(t->pre, cp, cls, m, i);
        bpe_word(t, s + off[i], off[j] - off[i], ids);
        i = j;
    }
    free(cp); free(off); free(cls);
}

/* Text between added tokens: normalize, pre-tokenize, BPE. */
static void encode_segment(const Tokenizer *t, const char *s, size_t n, I32Vec *ids) {
    if (n == 0) return;
    Buf norm = {0};
    if (t->nfc && uni_nfc(s, n, &norm)) { s = norm.data; n = norm.len; }
    if (t->spm) { /* [Prepend U+2581,] Replace ' ' -> U+2581; no pre-tokenizer: the segment is one word */
        Buf b = {0};
        if (t->spm_prepend) buf_append(&b, "\xE2\x96\x81", 3);
        for (size_t i = 0; i < n; i++)
            if (s[i] == ' ') buf_append(&b, "\xE2\x96\x81", 3);
            else buf_append(&b, s + i, 1);
        bpe_word(t, b.data, b.len, ids);
        buf_free(&b);
    } else {
        pretokenize(t, s, n, ids);
    }
    buf_free(&norm);
}

/* The longest added token at s[0..n), or NULL. */
static const AddedToken *added_at(const Tokenizer *t, const char *s, size_t n) {
    unsigned char b = (unsigned char)s[0];
    for (int k = t->first_added[b]; k < t->first_added[b + 1]; k++) {
        const AddedToken *a = &t->added[k];
        if (a->len <= n && memcmp(a->text, s, a->len) == 0) return a;
    }
    return NULL;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, I32Vec *ids) {
    size_t bad;
    if (!utf8_valid(text, len, &bad)) {
        char where[64];
        snprintf(where, sizeof where, "text:byte %zu", bad);
        return quorum_input_error(where, "not valid UTF-8 (tokenizer %s)", t->path);
    }
    size_t seg = 0;
    for (size_t i = 0; i < len;) {
        const AddedToken *a = added_at(t, text + i, len - i);
        if (!a) { i++; continue; }
        encode_segment(t, text + seg, i - seg, ids);
        i32vec_push(ids, a->id);
        i += a->len;
        seg = i;
    }
    encode_segment(t, text + seg, len - seg, ids);
    return 0;
}

/* ---- decode ---- */

/* Length of the maximal prefix of an ill-formed sequence at s (what one U+FFFD replaces). */
static size_t bad_utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t need = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 0;
    size_t k = 1;
    for (; k <= need && k < n; k++) {
        unsigned lo = 0x80, hi = 0xBF;
        if (k == 1) {
            if (c == 0xE0) lo = 0xA0;
            else if (c == 0xED) hi = 0x9F;
            else if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;
        }
        if (s[k] < lo || s[k] > hi) break;
    }
    return k;
}

/* Appends bytes as UTF-8, each ill-formed subsequence replaced by U+FFFD (Rust's from_utf8_lossy). */
static void append_lossy(Buf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t bad, ok = utf8_valid(s + i, n - i, &bad) ? n - i : bad;
        buf_append(out, s + i, ok);
        i += ok;
        if (i < n) { buf_append(out, "\xEF\xBF\xBD", 3); i += bad_utf8_len(u + i, n - i); }
    }
}

static int byte_token(const char *s, int32_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, Buf *out) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab_size || t->tok_len[ids[i]] < 0)
            return quorum_input_error("ids", "token id %d at position %zu is not in the vocabulary of %s", ids[i], i, t->path);
    Buf raw = {0}, fused = {0};
    for (size_t i = 0; i < n; i++) {
        const char *s = t->tok_text.data + t->tok_off[ids[i]];
        int32_t len = t->tok_len[ids[i]];
        int b = t->spm && t->byte_fallback && !t->is_added[ids[i]] ? byte_token(s, len) : -1;
        if (!t->spm || b >= 0) { char c = (char)b; buf_append(&raw, b >= 0 ? &c : s, b >= 0 ? 1 : (size_t)len); continue; }
        append_lossy(&fused, raw.data, raw.len); /* ByteFallback: a run of byte tokens is one string */
        raw.len = 0;
        for (int32_t k = 0; k < len; k++) /* Replace U+2581 -> ' ' */
            if (k + 2 < len && memcmp(s + k, "\xE2\x96\x81", 3) == 0) { buf_append(&fused, " ", 1); k += 2; }
            else buf_append(&fused, s + k, 1);
    }
    append_lossy(&fused, raw.data, raw.len);
    size_t skip = t->spm_prepend && fused.len && fused.data[0] == ' ' ? 1 : 0; /* Strip(' ', 1, 0) */
    if (fused.len > skip) buf_append(out, fused.data + skip, fused.len - skip); /* fused.data is NULL when empty */
    buf_free(&raw);
    buf_free(&fused);
    return 0;
}
