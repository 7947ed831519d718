/* member_builtin.c - synthetic committee members whose reward is a known function of the response
 * bytes (quorum/score.h), and member_open/member_close dispatching between builtin and HF members.
 * They score Pair.chosen / Pair.rejected exactly as stored: raw bytes, no tokenizer, no template. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "quorum/common.h"
#include "quorum/score.h"

typedef enum { RULE_LEN, RULE_NEGLEN, RULE_HASH, RULE_KW } Rule;

typedef struct {
    Rule rule;
    uint64_t seed;   /* hash */
    char *word;      /* kw */
    size_t word_len;
} Builtin;

/* builtin:hash[:S]: FNV-1a 64 over the 8 little-endian bytes of S then the response; the top 24 bits
 * scaled to [-1, 1), so the value is exact in float32 and any language can reproduce it. */
static float hash_reward(uint64_t seed, const char *s, int64_t n) {
    uint8_t le[8];
    for (int k = 0; k < 8; k++) le[k] = (uint8_t)(seed >> (8 * k));
    uint64_t h = fnv1a64(le, 8, FNV1A64_INIT);
    h = fnv1a64(s, (size_t)n, h);
    return (float)(h >> 40) / 8388608.0f - 1.0f;
}

/* Non-overlapping, left to right, byte-exact (Python's bytes.count). */
static int64_t count_word(const char *s, int64_t n, const char *w, size_t wn) {
    int64_t c = 0;
    for (int64_t i = 0; i + (int64_t)wn <= n;) {
        if (memcmp(s + i, w, wn) == 0) { c++; i += (int64_t)wn; }
        else i++;
    }
    return c;
}

static float builtin_reward(const Builtin *b, const char *s, int64_t n) {
    switch (b->rule) {
    case RULE_LEN: return (float)n;
    case RULE_NEGLEN: return -(float)n;
    case RULE_HASH: return hash_reward(b->seed, s, n);
    case RULE_KW: return (float)count_word(s, n, b->word, b->word_len) - 0.5f;
    }
    return 0.0f;
}

static int builtin_score(Member *m, const Pair *pairs, int64_t n, float *chosen, float *rejected) {
    const Builtin *b = m->impl;
    for (int64_t i = 0; i < n; i++) {
        chosen[i] = builtin_reward(b, pairs[i].chosen, pairs[i].chosen_len);
        rejected[i] = builtin_reward(b, pairs[i].rejected, pairs[i].rejected_len);
    }
    return 0;
}

static void builtin_close(Member *m) {
    Builtin *b = m->impl;
    if (b) free(b->word);
    free(b);
    m->impl = NULL;
}

/* The rule text after "builtin:", or NULL. Job paths are resolved against the job's folder, so
 * "builtin:len" may arrive as "<jobdir>/builtin:len": accept the marker after the last '/' too. */
static const char *builtin_rule(const char *path) {
    if (!strncmp(path, "builtin:", 8)) return path + 8;
    const char *p = strstr(path, "/builtin:");
    return p ? p + 9 : NULL;
}

static int builtin_open(Member *m, const JobMember *cfg, const char *rule) {
    char where[1400];
    snprintf(where, sizeof where, "committee member \"%s\":path", cfg->name);
    Builtin b = {0};
    if (!strcmp(rule, "len")) b.rule = RULE_LEN;
    else if (!strcmp(rule, "neglen")) b.rule = RULE_NEGLEN;
    else if (!strcmp(rule, "hash")) b.rule = RULE_HASH;
    else if (!strncmp(rule, "hash:", 5)) {
        char *end = NULL;
        errno = 0;
        b.rule = RULE_HASH;
        b.seed = strtoull(rule + 5, &end, 10);
        if (!rule[5] || *end || errno || rule[5] == '-')
            return quorum_input_error(where, "\"builtin:%s\": the seed must be a non-negative integer", rule);
    } else if (!strncmp(rule, "kw:", 3)) {
        if (!rule[3]) return quorum_input_error(where, "\"builtin:kw:\" needs a word");
        b.rule = RULE_KW;
        b.word = xstrdup(rule + 3);
        b.word_len = strlen(b.word);
    } else {
        return quorum_input_error(where, "unknown rule \"builtin:%s\" (len, neglen, hash[:S], kw:<word>)", rule);
    }
    m->impl = xmalloc(sizeof b);
    memcpy(m->impl, &b, sizeof b);
    m->score = builtin_score;
    m->close = builtin_close;
    return 0;
}

int member_open(Member *m, const JobMember *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const char *rule = builtin_rule(cfg->path);
    if (rule) return builtin_open(m, cfg, rule);
    return cfg->kind == MEMBER_REWARD ? member_hf_open(m, cfg) : member_lm_open(m, cfg);
}

int member_open_check(Member *m, const JobMember *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    /* lm and implicit members render the pair as a reward member does; a judge renders its own prompt */
    return builtin_rule(cfg->path) || cfg->kind == MEMBER_JUDGE ? 0 : member_hf_open_template(m, cfg);
}

void member_close(Member *m) {
    if (m->close) m->close(m);
    m->close = NULL;
    m->score = NULL;
}
