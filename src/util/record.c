/* record.c - fingerprints and stage records (quorum/record.h). */
#include "quorum/record.h"
#include "quorum/common.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void fp_init(Fingerprint *f) { f->n = 0; }

void fp_add(Fingerprint *f, const char *name, uint64_t value) {
    qCheck(f->n < FP_MAX_INPUTS, "a fingerprint holds at most FP_MAX_INPUTS inputs", "fingerprint too long at \"%s\"", name);
    snprintf(f->name[f->n], FP_NAME, "%s", name);
    f->value[f->n++] = value;
}

uint64_t fp_hash_str(uint64_t h, const char *s) { return fnv1a64(s, strlen(s) + 1, h); } /* NUL separates */
uint64_t fp_hash_i64(uint64_t h, int64_t v) { return fnv1a64(&v, sizeof v, h); }
uint64_t fp_hash_f32(uint64_t h, float v) { return fnv1a64(&v, sizeof v, h); }

uint64_t fp_value(const Fingerprint *f) {
    uint64_t h = FNV1A64_INIT;
    for (int i = 0; i < f->n; i++) h = fnv1a64(&f->value[i], sizeof f->value[i], fp_hash_str(h, f->name[i]));
    return h;
}

/* FNV-1a of bytes [off, off+n) of an open file, chained into h. */
static uint64_t hash_range(FILE *fp, long off, long n, uint64_t h, int *ok) {
    char buf[1 << 16];
    if (fseek(fp, off, SEEK_SET) != 0) { *ok = 0; return h; }
    while (n > 0) {
        size_t want = n < (long)sizeof buf ? (size_t)n : sizeof buf;
        size_t got = fread(buf, 1, want, fp);
        if (got == 0) { *ok = 0; return h; }
        h = fnv1a64(buf, got, h);
        n -= (long)got;
    }
    return h;
}

uint64_t fp_file_identity(const char *path, int deep, int *ok) {
    struct stat st;
    *ok = 0;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    *ok = 1;
    long size = (long)st.st_size, mib = 1L << 20;
    uint64_t h = fp_hash_i64(FNV1A64_INIT, size);
    if (deep) h = hash_range(fp, 0, size, h, ok);
    else {
        h = fp_hash_i64(fp_hash_i64(h, (int64_t)st.st_mtim.tv_sec), (int64_t)st.st_mtim.tv_nsec);
        h = hash_range(fp, 0, size < mib ? size : mib, h, ok);
        if (size > mib) h = hash_range(fp, size - mib, mib, h, ok);
    }
    fclose(fp);
    return h;
}

uint64_t fp_file(const char *path, int *ok) {
    struct stat st;
    *ok = 0;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    *ok = 1;
    uint64_t h = hash_range(fp, 0, (long)st.st_size, FNV1A64_INIT, ok);
    fclose(fp);
    return h;
}

char *record_path(const char *out_dir, const char *stage, const char *corpus) {
    Buf b = {0};
    buf_appendf(&b, "%s/records/%s.%s.json", out_dir, corpus ? corpus : "job", stage);
    return b.data;
}

static void hex(char out[17], uint64_t v) { snprintf(out, 17, "%016" PRIx64, v); }

int record_write(const char *out_dir, const char *stage, const char *corpus, const Fingerprint *f,
                 const char *output) {
    char h[17];
    cJSON *root = cJSON_CreateObject(), *in = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "stage", stage);
    cJSON_AddStringToObject(root, "corpus", corpus ? corpus : "");
    hex(h, fp_value(f));
    cJSON_AddStringToObject(root, "fingerprint", h);
    for (int i = 0; i < f->n; i++) {
        hex(h, f->value[i]);
        cJSON_AddStringToObject(in, f->name[i], h);
    }
    cJSON_AddItemToObject(root, "inputs", in);
    if (output) {
        char *p = path_join(out_dir, output);
        int ok = 0;
        hex(h, fp_file(p, &ok));
        free(p);
        cJSON_AddStringToObject(root, "output", output);
        cJSON_AddStringToObject(root, "output_fnv", ok ? h : "missing");
    }
    char *path = record_path(out_dir, stage, corpus);
    int rc = json_write_atomic(path, root);
    cJSON_Delete(root);
    free(path);
    return rc;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* Why the recorded inputs differ from f: the first input that changed, was added or was dropped. */
static void input_diff(const cJSON *in, const Fingerprint *f, char *why, size_t cap) {
    char h[17];
    for (int i = 0; i < f->n; i++) {
        const char *was = json_str(in, f->name[i]);
        hex(h, f->value[i]);
        if (!was) { snprintf(why, cap, "input \"%s\" is new", f->name[i]); return; }
        if (strcmp(was, h)) { snprintf(why, cap, "input \"%s\" changed", f->name[i]); return; }
    }
    snprintf(why, cap, "inputs differ (one was dropped)");
}

/* The output file still has the checksum the record holds. */
static int output_unchanged(const char *out_dir, const char *out, const char *was, char *why, size_t cap) {
    char *p = path_join(out_dir, out), now[17];
    int ok = 0;
    hex(now, fp_file(p, &ok));
    free(p);
    if (!ok) snprintf(why, cap, "output %s is missing", out);
    else if (!was || strcmp(was, now)) snprintf(why, cap, "output %s changed since it was written", out);
    return ok && was && !strcmp(was, now);
}

int record_check(const char *out_dir, const char *stage, const char *corpus, const Fingerprint *f,
                 int *same_inputs, char *why, size_t cap) {
    if (same_inputs) *same_inputs = 0;
    char *path = record_path(out_dir, stage, corpus);
    size_t len = 0;
    const char *err = NULL;
    char *text = file_exists(path) ? file_read_all(path, &len, &err) : NULL;
    free(path);
    if (!text) { snprintf(why, cap, "no record of a finished run"); return 0; }
    cJSON *root = cJSON_Parse(text);
    free(text);
    char h[17];
    hex(h, fp_value(f));
    const char *fp = root ? json_str(root, "fingerprint") : NULL, *out = root ? json_str(root, "output") : NULL;
    int current = 0;
    if (!fp) snprintf(why, cap, "unreadable record");
    else if (strcmp(fp, h)) input_diff(cJSON_GetObjectItemCaseSensitive(root, "inputs"), f, why, cap);
    else {
        if (same_inputs) *same_inputs = 1;
        current = !out || output_unchanged(out_dir, out, json_str(root, "output_fnv"), why, cap);
    }
    cJSON_Delete(root);
    return current;
}
