/* manifest.c - <corpus_dir>/manifest.json: counts, shard list and checksums (see quorum/corpus.h).
 * 64-bit checksums are written as 16 hex digits (a JSON number cannot hold them exactly). */
#include "quorum/corpus.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void add_hex(cJSON *o, const char *key, uint64_t v) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, v);
    cJSON_AddStringToObject(o, key, hex);
}

int corpus_manifest_write(const CorpusManifest *m, const char *dir) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", m->name);
    cJSON_AddStringToObject(o, "split", m->split);
    cJSON_AddStringToObject(o, "source", m->source);
    add_hex(o, "source_checksum", m->source_checksum);
    cJSON_AddNumberToObject(o, "source_bytes", (double)m->source_bytes);
    cJSON_AddStringToObject(o, "format", corpus_format_name(m->format));
    cJSON_AddNumberToObject(o, "shard_size", (double)m->shard_size);
    cJSON_AddNumberToObject(o, "n_lines", (double)m->n_lines);
    cJSON_AddNumberToObject(o, "n_pairs", (double)m->n_pairs);
    cJSON_AddNumberToObject(o, "n_rejected", (double)m->n_rejected);
    cJSON_AddNumberToObject(o, "n_shards", (double)m->n_shards);
    cJSON *shards = cJSON_AddArrayToObject(o, "shards");
    for (int64_t k = 0; k < m->n_shards; k++) {
        cJSON *e = cJSON_CreateObject();
        char file[64];
        snprintf(file, sizeof file, "shard-%05lld.h5", (long long)k);
        cJSON_AddStringToObject(e, "file", file);
        cJSON_AddNumberToObject(e, "pairs", (double)m->shard_pairs[k]);
        add_hex(e, "checksum", m->shard_checksum[k]);
        cJSON_AddItemToArray(shards, e);
    }
    char *path = path_join(dir, "manifest.json");
    int rc = json_write_atomic(path, o);
    cJSON_Delete(o);
    free(path);
    return rc;
}

static int64_t get_int(FirstError *cx, const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != (double)(int64_t)v->valuedouble)
        return first_error(cx, key, "expected a non-negative integer"), 0;
    return (int64_t)v->valuedouble;
}

static void get_str(FirstError *cx, const cJSON *o, const char *key, char *out, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) { first_error(cx, key, "expected a string"); return; }
    strcpy(out, v->valuestring);
}

static uint64_t get_hex(FirstError *cx, const cJSON *o, const char *key) {
    char s[32] = {0}, *end = NULL;
    get_str(cx, o, key, s, sizeof s);
    if (cx->failed) return 0;
    uint64_t v = strtoull(s, &end, 16);
    if (strlen(s) != 16 || *end) first_error(cx, key, "expected 16 hex digits");
    return v;
}

int corpus_manifest_read(CorpusManifest *m, const char *dir) {
    memset(m, 0, sizeof *m);
    char *path = path_join(dir, "manifest.json");
    size_t len;
    const char *err;
    char *text = file_read_all(path, &len, &err);
    if (!text) {
        quorum_input_error(path, "cannot read manifest (%s): the corpus is missing or its ingest did not finish", err);
        free(path);
        return -1;
    }
    FirstError cx = {path, "%s: key \"%s\"", 0};
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(o)) {
        quorum_input_error(path, "malformed manifest JSON");
        cJSON_Delete(o);
        free(path);
        return -1;
    }
    char format[32] = {0};
    get_str(&cx, o, "name", m->name, sizeof m->name);
    get_str(&cx, o, "split", m->split, sizeof m->split);
    get_str(&cx, o, "source", m->source, sizeof m->source);
    get_str(&cx, o, "format", format, sizeof format);
    m->format = -1;
    for (int f = FORMAT_AUTO; f <= FORMAT_PAIRS; f++)
        if (!strcmp(format, corpus_format_name(f))) m->format = f;
    if (!cx.failed && m->format < 0) first_error(&cx, "format", "unknown format");
    m->source_checksum = get_hex(&cx, o, "source_checksum");
    if (cJSON_GetObjectItemCaseSensitive(o, "source_bytes")) m->source_bytes = get_int(&cx, o, "source_bytes");
    m->shard_size = get_int(&cx, o, "shard_size");
    m->n_lines = get_int(&cx, o, "n_lines");
    m->n_pairs = get_int(&cx, o, "n_pairs");
    m->n_rejected = get_int(&cx, o, "n_rejected");
    m->n_shards = get_int(&cx, o, "n_shards");
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(o, "shards");
    if (!cx.failed && (!cJSON_IsArray(shards) || cJSON_GetArraySize(shards) != m->n_shards))
        first_error(&cx, "shards", "expected an array of n_shards entries");
    if (!cx.failed) {
        m->shard_checksum = xcalloc((size_t)m->n_shards + 1, sizeof(uint64_t));
        m->shard_pairs = xcalloc((size_t)m->n_shards + 1, sizeof(int64_t));
        int64_t k = 0, total = 0;
        for (const cJSON *e = shards->child; e && !cx.failed; e = e->next, k++) {
            m->shard_pairs[k] = get_int(&cx, e, "pairs");
            m->shard_checksum[k] = get_hex(&cx, e, "checksum");
            total += m->shard_pairs[k];
        }
        if (!cx.failed && total != m->n_pairs) first_error(&cx, "shards", "shard pair counts do not add up to n_pairs");
    }
    if (!cx.failed && m->n_lines != m->n_pairs + m->n_rejected)
        first_error(&cx, "n_lines", "n_lines != n_pairs + n_rejected");
    cJSON_Delete(o);
    free(path);
    if (cx.failed) {
        corpus_manifest_free(m);
        return -1;
    }
    return 0;
}

void corpus_manifest_free(CorpusManifest *m) {
    free(m->shard_checksum);
    free(m->shard_pairs);
    m->shard_checksum = NULL;
    m->shard_pairs = NULL;
}
