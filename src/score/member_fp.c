/* member_fp.c - a committee member's identity as one fingerprint (quorum/score.h): what the rewards it
 * writes depend on. Builtin members: the rule text. Hugging Face folders: config.json (architecture,
 * head, sizes), tokenizer.json and tokenizer_config.json (chat template) byte for byte, every
 * *.safetensors file by size, mtime and its first and last MiB (the whole file with
 * QUORUM_DEEP_FINGERPRINT=1), the safetensors index; then max_length, batch_size (HF members: the
 * last bits of a reward depend on its batch) and the truncation rule. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quorum/common.h"
#include "quorum/record.h"
#include "quorum/score.h"

/* Bumped when member_hf.c's rendering or truncation changes what a member computes. */
#define MEMBER_RULE_VERSION "keep-end-v1"

static uint64_t hash_optional(uint64_t h, const char *dir, const char *name) {
    char *p = path_join(dir, name);
    int ok = 0;
    uint64_t v = fp_file(p, &ok);
    free(p);
    return fp_hash_i64(fp_hash_str(h, name), ok ? (int64_t)v : -1);
}

/* Non-reward kinds: the kind, the reference folder (implicit) and the judge template's bytes join the
 * identity (reward members keep the fingerprint they always had). */
static int kind_fingerprint(const JobMember *cfg, uint64_t h, uint64_t *out) {
    h = fp_hash_str(fp_hash_str(h, "kind"), member_kind_name(cfg->kind));
    if (cfg->kind == MEMBER_IMPLICIT && cfg->ref[0]) {
        JobMember ref = *cfg;
        uint64_t r;
        ref.kind = MEMBER_REWARD;
        snprintf(ref.path, sizeof ref.path, "%s", cfg->ref);
        if (member_fingerprint(&ref, &r) != 0) return -1;
        h = fp_hash_i64(h, (int64_t)r);
    }
    if (cfg->kind == MEMBER_JUDGE) {
        int ok = 1;
        h = cfg->prompt_template[0] ? fp_hash_i64(h, (int64_t)fp_file(cfg->prompt_template, &ok))
                                    : fp_hash_str(h, MEMBER_JUDGE_DEFAULT_TEMPLATE);
        if (!ok) return quorum_input_error(cfg->prompt_template, "member \"%s\": unreadable judge prompt template", cfg->name);
    }
    *out = h;
    return 0;
}

int member_fingerprint(const JobMember *cfg, uint64_t *out) {
    const char *rule = strstr(cfg->path, "builtin:");
    uint64_t h = fp_hash_str(FNV1A64_INIT, MEMBER_RULE_VERSION);
    if (cfg->kind != MEMBER_REWARD && kind_fingerprint(cfg, h, &h) != 0) return -1;
    h = fp_hash_i64(h, cfg->max_length);
    if (rule && !strchr(rule, '/')) { *out = fp_hash_str(h, rule); return 0; }
    /* A reward's last bits depend on its batch (BLAS kernels differ with the row count): batch_size is
     * part of what an HF member computes. */
    h = fp_hash_i64(h, cfg->batch_size);
    int deep = getenv("QUORUM_DEEP_FINGERPRINT") && atoi(getenv("QUORUM_DEEP_FINGERPRINT")) > 0;
    char *cfg_path = path_join(cfg->path, "config.json");
    int ok = 0;
    h = fp_hash_i64(h, (int64_t)fp_file(cfg_path, &ok));
    free(cfg_path);
    if (!ok) return quorum_input_error(cfg->path, "member \"%s\": no readable config.json", cfg->name);
    h = hash_optional(h, cfg->path, "tokenizer.json");
    h = hash_optional(h, cfg->path, "tokenizer_config.json");
    h = hash_optional(h, cfg->path, "model.safetensors.index.json");
    char pattern[JOB_STR + 32];
    snprintf(pattern, sizeof pattern, "%s/*.safetensors", cfg->path);
    glob_t g;
    int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0; /* sorted */
    for (int i = 0; i < n && ok; i++) {
        const char *base = strrchr(g.gl_pathv[i], '/');
        h = fp_hash_i64(fp_hash_str(h, base ? base + 1 : g.gl_pathv[i]), (int64_t)fp_file_identity(g.gl_pathv[i], deep, &ok));
        if (!ok) quorum_input_error(g.gl_pathv[i], "member \"%s\": weights file unreadable", cfg->name);
    }
    globfree(&g);
    if (!ok) return -1;
    if (n == 0) return quorum_input_error(cfg->path, "member \"%s\": no *.safetensors weights in the folder", cfg->name);
    *out = h;
    return 0;
}
