/* cmd_export.c - `quorum export`: shards back to JSONL, in pair-id order, with "id" and "split".
 * HH pairs become {"chosen","rejected"} transcripts (prompt + response, byte for byte), flat pairs
 * {"prompt","chosen","rejected"}, chat pairs two message lists (prompt turns + the reply). */
#include "quorum/common.h"
#include "quorum/corpus.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: quorum export --corpus-dir DIR [--out FILE.jsonl]\n"
    "Writes the pairs of an ingested (or cleaned) corpus folder as JSONL, in pair-id order, to FILE\n"
    "(atomically) or stdout. Every shard is checked against the manifest's checksum first.\n";

/* cJSON wants NUL-terminated strings; shard text is not. */
static void add_bytes(cJSON *o, const char *key, const char *s, int64_t n) {
    char *z = xmalloc((size_t)n + 1);
    memcpy(z, s, (size_t)n);
    z[n] = 0;
    cJSON_AddStringToObject(o, key, z);
    free(z);
}
static void add_concat(cJSON *o, const char *key, const char *a, int64_t na, const char *b, int64_t nb) {
    char *z = xmalloc((size_t)(na + nb) + 1);
    memcpy(z, a, (size_t)na);
    memcpy(z + na, b, (size_t)nb);
    z[na + nb] = 0;
    cJSON_AddStringToObject(o, key, z);
    free(z);
}

static void add_messages(cJSON *o, const char *key, const Pair *p, const char *reply, int64_t n) {
    static const char *const ROLES[ROLE_COUNT] = {"system", "user", "assistant", "observation", "function_call"};
    cJSON *list = cJSON_AddArrayToObject(o, key);
    for (int t = 0; t <= p->n_turns; t++) {
        cJSON *m = cJSON_CreateObject();
        int last = t == p->n_turns;
        cJSON_AddStringToObject(m, "role", ROLES[last ? ROLE_ASSISTANT : p->turns[t].role]);
        add_bytes(m, "content", last ? reply : p->turns[t].text, last ? n : p->turns[t].len);
        cJSON_AddItemToArray(list, m);
    }
}

static void export_pair(Buf *out, const Pair *p, const char *split) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)p->id);
    cJSON_AddStringToObject(o, "split", split);
    if (p->format == FORMAT_HH) {
        add_concat(o, "chosen", p->prompt, p->prompt_len, p->chosen, p->chosen_len);
        add_concat(o, "rejected", p->prompt, p->prompt_len, p->rejected, p->rejected_len);
    } else if (p->format != FORMAT_CHAT) { /* flat, or unknown (auto) from a shard without pair_format */
        add_bytes(o, "prompt", p->prompt, p->prompt_len);
        add_bytes(o, "chosen", p->chosen, p->chosen_len);
        add_bytes(o, "rejected", p->rejected, p->rejected_len);
    } else {
        add_messages(o, "chosen", p, p->chosen, p->chosen_len);
        add_messages(o, "rejected", p, p->rejected, p->rejected_len);
    }
    char *s = cJSON_PrintUnformatted(o);
    buf_append_str(out, s);
    buf_append_str(out, "\n");
    free(s);
    cJSON_Delete(o);
}

/* Every pair of the corpus folder, appended to `out`. 0 or -1 after a one-line error. */
static int export_corpus(const char *dir, Buf *out, int64_t *n_pairs) {
    CorpusManifest m;
    if (corpus_manifest_read(&m, dir) != 0) return -1;
    int rc = 0;
    *n_pairs = 0;
    for (int64_t k = 0; k < m.n_shards && rc == 0; k++) {
        Shard s;
        char *path = shard_path(dir, k);
        if (shard_read(&s, path) != 0) rc = -1;
        else if (shard_checksum(&s) != m.shard_checksum[k] || s.n != m.shard_pairs[k])
            rc = quorum_input_error(path, "shard does not match the manifest (checksum or pair count): re-run ingest");
        for (int64_t i = 0; rc == 0 && i < s.n; i++) {
            Pair p;
            shard_get_pair(&s, i, &p);
            export_pair(out, &p, s.split);
        }
        if (rc == 0) *n_pairs += s.n;
        shard_free(&s); /* zeroed by a failed shard_read */
        free(path);
    }
    corpus_manifest_free(&m);
    return rc;
}

int cmd_export(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
    const char *dir = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--corpus-dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else {
            if (quorum_rank() == 0) fprintf(stderr, "quorum: error: export: unexpected argument %s\n%s", argv[i], USAGE);
            return 2;
        }
    }
    if (!dir) {
        if (quorum_rank() == 0) fprintf(stderr, "quorum: error: export: --corpus-dir is required\n%s", USAGE);
        return 2;
    }
    if (quorum_rank() != 0) return 0; /* one writer; the other ranks have nothing to do */
    Buf out = {0};
    int64_t n = 0;
    int rc = export_corpus(dir, &out, &n);
    if (rc == 0 && out_path) {
        if (file_write_atomic(out_path, out.data ? out.data : "", out.len) != 0)
            rc = quorum_input_error(out_path, "cannot write export");
        else quorum_log("export: %lld pairs -> %s", (long long)n, out_path);
    } else if (rc == 0 && out.len) {
        fwrite(out.data, 1, out.len, stdout);
        fflush(stdout);
    }
    buf_free(&out);
    return rc == 0 ? 0 : 1;
}
