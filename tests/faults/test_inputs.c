/* faults.inputs - bad input files get exactly one clear error line and a failure return, never a crash:
 *   safetensors / model_load on every truncation of a real checkpoint and on corrupted headers,
 *   tokenizer.json with missing or mistyped fields (and truncated JSON),
 *   job files with wrong types and unknown keys (the line names the key path).
 * The reference for "complete and valid" is the same file before it was damaged: it must load.
 * The tokenizer is tests/fuzz/tiny_tokenizer.json (all 256 byte symbols, a few merges, Llama-3's Split
 * regex): small, so the suite stays fast under ASan.
 * usage: test_inputs WORK_DIR TINY_TOKENIZER_JSON */
#include "../test.h"
#include "quorum/common.h"
#include "quorum/job.h"
#include "quorum/model.h"
#include "quorum/ops.h"
#include "quorum/safetensors.h"
#include "quorum/tokenizer.h"
#include "quorum/train.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <mpi.h>
#include <string.h>
#include <unistd.h>

/* Exactly one line, starting "quorum: error: " and containing `needle`. */
static int one_error_line(const char *out, const char *needle) {
    size_t n = strlen(out);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += out[i] == '\n';
    return lines == 1 && out[n - 1] == '\n' && !strncmp(out, "quorum: error: ", 15) && strstr(out, needle) != NULL;
}

#define EXPECT_ONE_LINE(out, needle, label) \
    do { printf("%s -> %s", label, out); CHECKF(one_error_line(out, needle), "%s: expected one \"quorum: error:\" line naming \"%s\", got:\n%s", label, needle, out); } while (0)

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* Copies file src to dir/name; returns its bytes (caller frees) and their count in *n. */
static char *copy_file(const char *src, const char *dir, const char *name, size_t *n) {
    const char *err = NULL;
    char *bytes = file_read_all(src, n, &err);
    REQUIRE(bytes != NULL);
    char *path = path_join(dir, name);
    write_bytes(path, bytes, *n);
    free(path);
    return bytes;
}

/* ---- safetensors + model_load ---- */

static int load_model(const char *dir) {
    Model *m = NULL;
    int rc = model_load(&m, dir, &backend_cpu);
    if (m) model_free(m);
    return rc;
}

/* Loads dir with its model.safetensors replaced by `bytes`: -1 and one line naming the file. */
static void expect_bad_checkpoint(const char *dir, const char *st, const char *bytes, size_t n, const char *label) {
    write_bytes(st, bytes, n);
    capture_begin();
    int rc = load_model(dir);
    char *out = capture_end();
    CHECKF(rc == -1, "%s: model_load returned %d", label, rc);
    EXPECT_ONE_LINE(out, "model.safetensors", label);
    free(out);
}

static void test_safetensors(const char *work, const char *tokenizer) {
    InitModelOptions o;
    memset(&o, 0, sizeof o);
    snprintf(o.arch, sizeof o.arch, "llama");
    snprintf(o.head, sizeof o.head, "score");
    o.layers = 1, o.dim = 16, o.heads = 2, o.kv_heads = 1, o.ffn = 32, o.vocab = 300, o.max_pos = 64, o.num_labels = 1;
    o.seed = 5;
    char *tokdir = path_join(work, "tok");
    mkdir_p(tokdir);
    size_t tn = 0;
    free(copy_file(tokenizer, tokdir, "tokenizer.json", &tn));
    snprintf(o.tokenizer, sizeof o.tokenizer, "%s", tokdir);
    free(tokdir);
    snprintf(o.out, sizeof o.out, "%s/model", work);
    REQUIRE(model_init_random(&o) == 0);
    char *st = path_join(o.out, "model.safetensors");
    size_t n = 0;
    const char *err = NULL;
    char *good = file_read_all(st, &n, &err);
    REQUIRE(good != NULL && n > 64);
    CHECK(load_model(o.out) == 0); /* the undamaged checkpoint loads */

    uint64_t hlen = 0;
    memcpy(&hlen, good, 8);
    REQUIRE(hlen + 8 < n);
    /* every cut in the header region, then a spread of cuts through the data */
    size_t cuts[64];
    int nc = 0;
    size_t marks[] = {0, 1, 7, 8, 9, 8 + hlen / 2, 8 + hlen - 1, 8 + hlen, 8 + hlen + 1, 8 + hlen + 4};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) cuts[nc++] = marks[i];
    for (int i = 1; i <= 20; i++) cuts[nc++] = 8 + hlen + (n - 8 - hlen) * (size_t)i / 21;
    cuts[nc++] = n - 1;
    for (int i = 0; i < nc; i++) {
        char label[64];
        snprintf(label, sizeof label, "truncated to %zu of %zu bytes", cuts[i], n);
        expect_bad_checkpoint(o.out, st, good, cuts[i], label);
    }
    /* corrupt headers: a huge header length, a length past the end, broken JSON, an unknown dtype,
     * offsets out of range (same length, so nothing else moves) */
    char *bad = xmalloc(n);
    uint64_t huge[2] = {(uint64_t)1 << 62, n};
    for (int i = 0; i < 2; i++) {
        memcpy(bad, good, n);
        memcpy(bad, &huge[i], 8);
        expect_bad_checkpoint(o.out, st, bad, n, i ? "header length past the end" : "header length 2^62");
    }
    memcpy(bad, good, n);
    bad[8] = '[';
    expect_bad_checkpoint(o.out, st, bad, n, "header is not a JSON object");
    memcpy(bad, good, n);
    char *dt = strstr(bad + 8, "\"F32\"");
    REQUIRE(dt != NULL && dt < bad + 8 + hlen);
    memcpy(dt, "\"Q32\"", 5);
    expect_bad_checkpoint(o.out, st, bad, n, "unknown dtype");
    memcpy(bad, good, n);
    char *off = strstr(bad + 8, "\"data_offsets\":[");
    REQUIRE(off != NULL && off < bad + 8 + hlen);
    off += strlen("\"data_offsets\":[");
    REQUIRE(*off >= '0' && *off <= '9');
    *off = *off == '9' ? '8' : '9'; /* begin offset shifted: overlap or out of range or size mismatch */
    expect_bad_checkpoint(o.out, st, bad, n, "data_offsets altered");
    write_bytes(st, good, n);
    CHECK(load_model(o.out) == 0); /* restored: loads again, nothing cached from the failures */
    free(bad);
    free(good);
    free(st);
}

/* ---- tokenizer.json ---- */

/* Loads `json` written to a file: NULL and one line naming the file. */
static void expect_bad_tokenizer(const char *path, const char *json, size_t n, const char *label) {
    write_bytes(path, json, n);
    capture_begin();
    Tokenizer *t = tokenizer_load(path);
    char *out = capture_end();
    CHECKF(t == NULL, "%s: tokenizer_load succeeded", label);
    if (t) tokenizer_free(t);
    EXPECT_ONE_LINE(out, "tokenizer.json", label);
    free(out);
}

/* Applies `edit` (delete or retype a key under path a.b) to the parsed tokenizer and tries to load it. */
static void tokenizer_edit_case(const char *path, const char *good, const char *obj, const char *key, cJSON *replace,
                                const char *label) {
    cJSON *root = cJSON_Parse(good);
    REQUIRE(root != NULL);
    cJSON *parent = obj ? cJSON_GetObjectItemCaseSensitive(root, obj) : root;
    REQUIRE(parent != NULL);
    if (replace) cJSON_ReplaceItemInObjectCaseSensitive(parent, key, replace);
    else cJSON_DeleteItemFromObjectCaseSensitive(parent, key);
    char *s = cJSON_PrintUnformatted(root);
    expect_bad_tokenizer(path, s, strlen(s), label);
    free(s);
    cJSON_Delete(root);
}

static void test_tokenizer(const char *work, const char *src) {
    size_t n = 0;
    char *good = copy_file(src, work, "tokenizer.json", &n);
    char *path = path_join(work, "tokenizer.json");
    Tokenizer *t = tokenizer_load(path);
    CHECK(t != NULL); /* the copy loads: damage below is what fails */
    if (t) tokenizer_free(t);
    tokenizer_edit_case(path, good, NULL, "model", NULL, "no model");
    tokenizer_edit_case(path, good, "model", "vocab", NULL, "no model.vocab");
    tokenizer_edit_case(path, good, "model", "merges", NULL, "no model.merges");
    tokenizer_edit_case(path, good, "model", "type", cJSON_CreateNumber(3), "model.type a number");
    tokenizer_edit_case(path, good, "model", "vocab", cJSON_CreateString("x"), "model.vocab a string");
    tokenizer_edit_case(path, good, NULL, "added_tokens", cJSON_CreateString("x"), "added_tokens a string");
    tokenizer_edit_case(path, good, NULL, "pre_tokenizer", cJSON_CreateNumber(1), "pre_tokenizer a number");
    expect_bad_tokenizer(path, good, n / 2, "truncated JSON");
    expect_bad_tokenizer(path, "", 0, "empty file");
    free(path);
    free(good);
}

/* ---- job files ---- */

static void expect_bad_job(const char *json, const char *needle, const char *label) {
    Job *job = xcalloc(1, sizeof *job);
    capture_begin();
    int rc = job_parse(job, json, "jobs/bad.json");
    char *out = capture_end();
    CHECKF(rc == -1, "%s: job_parse returned %d", label, rc);
    EXPECT_ONE_LINE(out, needle, label);
    CHECKF(strstr(out, "jobs/bad.json") != NULL, "%s: the line does not name the file: %s", label, out);
    free(out);
    free(job);
}

static void test_jobs(void) {
    const char *C = "\"corpora\":[{\"name\":\"a\",\"path\":\"a.jsonl\"}]";
    char buf[2048];
    Job *job = xcalloc(1, sizeof *job);
    snprintf(buf, sizeof buf, "{%s,\"committee\":[{\"name\":\"m\",\"path\":\"builtin:len\"}]}", C);
    CHECK(job_parse(job, buf, "jobs/good.json") == 0); /* the base of every case parses */
    free(job);
    struct { const char *json, *needle; } cases[] = {
        {"{\"corpora\":[{\"name\":\"a\",\"path\":\"a.jsonl\",\"fromat\":\"hh\"}]}", "fromat"},
        {"{\"corpora\":[{\"name\":\"a\",\"path\":7}]}", "path"},
        {"{\"corpora\":[{\"name\":\"a\"}]}", "path"},
        {"{\"corpora\":{\"name\":\"a\"}}", "corpora"},
        {"{%s,\"shard_size\":\"big\"}", "shard_size"},
        {"{%s,\"shard_size\":-3}", "shard_size"},
        {"{%s,\"shard_size\":1.5}", "shard_size"},
        {"{%s,\"vote\":{\"margin\":\"0\"}}", "margin"},
        {"{%s,\"vote\":{\"hihg_frac\":0.5}}", "hihg_frac"},
        {"{%s,\"clean\":{\"method\":\"sack\"}}", "method"},
        {"{%s,\"clean\":{\"splits\":\"harmless\"}}", "splits"},
        {"{%s,\"committee\":[{\"name\":\"m\",\"path\":\"builtin:len\",\"max_length\":\"long\"}]}", "max_length"},
        {"{%s,\"dpo\":{\"beta\":0.1}}", "policy"},
        {"{%s,\"dpo\":{\"policy\":\"p\",\"steps\":true}}", "steps"},
        {"{%s,\"seed\":null}", "seed"},
        {"{%s,\"unknown_top\":1}", "unknown_top"},
        {"[1,2]", "bad.json"},
        {"{%s,", "bad.json"},
        {"", "bad.json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(buf, sizeof buf, cases[i].json, C);
        expect_bad_job(buf, cases[i].needle, buf);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    REQUIRE(argc == 3);
    const char *work = argv[1], *tokenizer = argv[2];
    REQUIRE(mkdir_p(work) == 0);
    test_jobs();
    test_tokenizer(work, tokenizer);
    test_safetensors(work, tokenizer);
    MPI_Finalize();
    TEST_MAIN_END();
}
