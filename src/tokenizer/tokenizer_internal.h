/* tokenizer_internal.h - the Tokenizer struct and the pieces its source files share. */
#ifndef QUORUM_TOKENIZER_INTERNAL_H
#define QUORUM_TOKENIZER_INTERNAL_H
#include <pthread.h>

#include "quorum/tokenizer.h"

/* Byte-string -> int32 open-addressing map; keys live in the map's own arena. */
typedef struct {
    uint32_t *slot;   /* [cap] entry index + 1, 0 = empty */
    size_t cap;       /* power of two */
    int64_t *key_off; /* [n] into arena */
    int32_t *key_len, *val, *val2;
    size_t n, n_cap;
    Buf arena;
} StrMap;
void strmap_init(StrMap *m, size_t expected);
void strmap_free(StrMap *m);
/* Returns the entry index, or -1. */
int64_t strmap_find(const StrMap *m, const char *k, size_t len);
/* Inserts (caller checked absence); returns the entry index. */
int64_t strmap_insert(StrMap *m, const char *k, size_t len, int32_t val, int32_t val2);

/* (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t *key;    /* [cap] (a+1)<<32 | b, 0 = empty */
    int32_t *rank, *merged;
    size_t cap;
} MergeMap;
int merge_find(const MergeMap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged);

typedef enum { PRE_NONE = 0, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2 } PreKind;

typedef struct {
    char *text; size_t len;
    int32_t id;
} AddedToken;

struct Tokenizer {
    char *path;
    int byte_level;    /* ByteLevel pre-tokenizer + decoder: BPE symbols are bytes */
    int nfc;           /* NFC normalizer */
    int spm;           /* [Prepend +] Replace normalizer and the SentencePiece decoder: symbols are chars */
    int spm_prepend;   /* Llama-2/Mistral: Prepend U+2581 and a Strip(' ', 1, 0) decoder; Gemma: neither */
    PreKind pre;
    int ignore_merges, byte_fallback, fuse_unk;
    int32_t unk, bos, eos, pad;
    int add_bos;
    int vocab_size, tok_cap; /* largest id + 1; allocated length of the id tables */
    /* id -> token bytes (byte-level tokens stored as raw bytes, SPM tokens as their UTF-8 text) */
    int64_t *tok_off; int32_t *tok_len; Buf tok_text;
    unsigned char *is_added; /* [vocab_size] */
    StrMap vocab;            /* token bytes -> id (model vocab) */
    MergeMap merges;
    int32_t byte_id[256];    /* byte-level: the token of each byte; SPM: <0xNN>, -1 if absent */
    AddedToken *added; int n_added;
    int first_added[257];    /* added tokens sorted by first byte, then longest first */
    /* pre-token -> ids cache (mutable under the lock; the rest is read-only after load) */
    pthread_mutex_t cache_lock;
    StrMap cache;            /* val = offset in cache_ids, val2 = count */
    int32_t *cache_ids; size_t cache_ids_len, cache_ids_cap;
};

/* encode.c */
void bpe_word(const Tokenizer *t, const char *s, size_t n, I32Vec *ids);
size_t pretok_next(PreKind k, const uint32_t *cp, const unsigned char *cls, size_t n, size_t i);
#endif
