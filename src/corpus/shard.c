/* shard.c - one shard file: write (temp + rename), read + validate, pair views, checksum, builder.
 * Layout in quorum/corpus.h. Shards are plain serial HDF5 files: one owner writes each. */
#define _GNU_SOURCE
#include "quorum/corpus.h"
#include "quorum/h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *corpus_dir(const char *out_dir, const char *name) {
    char *corpora = path_join(out_dir, "corpora");
    char *d = path_join(corpora, name);
    free(corpora);
    return d;
}

char *shard_path(const char *dir, int64_t k) {
    char name[64];
    snprintf(name, sizeof name, "shard-%05lld.h5", (long long)k);
    return path_join(dir, name);
}

int shard_pair_ids(const char *corpus_dir, int64_t k, int64_t n, int64_t *ids) {
    char *path = shard_path(corpus_dir, k);
    h5q_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = f < 0 ? quorum_input_error(path, "cannot open the shard (re-run `quorum ingest`)") : 0;
    hsize_t d[1] = {(hsize_t)n};
    if (rc == 0) rc = h5q_read_all(f, path, "pair_id", H5T_NATIVE_INT64, 1, d, ids);
    if (f >= 0) H5Fclose(f);
    free(path);
    return rc;
}

/* ---- views ---- */

void shard_index_turns(Shard *s) {
    free(s->turns);
    s->turns = xcalloc((size_t)s->n_turns_total + 1, sizeof(Turn));
    for (int64_t t = 0; t < s->n_turns_total; t++) {
        s->turns[t].role = (Role)s->turn_role[t];
        s->turns[t].text = s->text + s->text_off[t];
        s->turns[t].len = s->text_off[t + 1] - s->text_off[t];
    }
}

void shard_get_pair(const Shard *s, int64_t i, Pair *out) {
    out->id = s->pair_id[i];
    out->prompt = s->prompt + s->prompt_off[i];
    out->prompt_len = s->prompt_off[i + 1] - s->prompt_off[i];
    out->chosen = s->chosen + s->chosen_off[i];
    out->chosen_len = s->chosen_off[i + 1] - s->chosen_off[i];
    out->rejected = s->rejected + s->rejected_off[i];
    out->rejected_len = s->rejected_off[i + 1] - s->rejected_off[i];
    out->turns = s->turns ? s->turns + s->turn_off[i] : NULL;
    out->n_turns = (int)(s->turn_off[i + 1] - s->turn_off[i]);
    out->format = s->pair_format ? s->pair_format[i] & 0x3f : s->format;
    out->prompt_from = s->pair_format ? s->pair_format[i] >> 6 : 0;
    out->extra = s->extra_off ? s->extra + s->extra_off[i] : NULL;
    out->extra_len = s->extra_off ? s->extra_off[i + 1] - s->extra_off[i] : 0;
}

uint64_t shard_checksum(const Shard *s) {
    int64_t n = s->n, T = s->n_turns_total;
    uint64_t h = FNV1A64_INIT;
    h = fnv1a64(s->pair_id, (size_t)n * 8, h);
    h = fnv1a64(s->prompt_off, (size_t)(n + 1) * 8, h);
    h = fnv1a64(s->prompt, (size_t)s->prompt_off[n], h);
    h = fnv1a64(s->chosen_off, (size_t)(n + 1) * 8, h);
    h = fnv1a64(s->chosen, (size_t)s->chosen_off[n], h);
    h = fnv1a64(s->rejected_off, (size_t)(n + 1) * 8, h);
    h = fnv1a64(s->rejected, (size_t)s->rejected_off[n], h);
    h = fnv1a64(s->turn_off, (size_t)(n + 1) * 8, h);
    h = fnv1a64(s->turn_role, (size_t)T, h);
    h = fnv1a64(s->text_off, (size_t)(T + 1) * 8, h);
    h = fnv1a64(s->text, (size_t)s->text_off[T], h);
    if (s->extra_off && s->extra_off[n] > 0) {
        h = fnv1a64(s->extra_off, (size_t)(n + 1) * 8, h);
        h = fnv1a64(s->extra, (size_t)s->extra_off[n], h);
    }
    return h;
}

void shard_free(Shard *s) {
    free(s->pair_id); free(s->prompt_off); free(s->chosen_off); free(s->rejected_off);
    free(s->prompt); free(s->chosen); free(s->rejected);
    free(s->turn_off); free(s->turn_role); free(s->text_off); free(s->text);
    free(s->extra_off); free(s->extra);
    free(s->turns); free(s->pair_format);
    memset(s, 0, sizeof *s);
}

/* ---- write ---- */

static int write_contents(hid_t f, const Shard *s) {
    int64_t n = s->n, T = s->n_turns_total;
    uint8_t *fmt = s->pair_format;
    if (!fmt) {
        fmt = xmalloc((size_t)n + 1);
        memset(fmt, s->format, (size_t)n);
    }
    int32_t format = s->format;
    int rc = 0;
    rc |= h5q_attr_write_str(f, "corpus", s->corpus);
    rc |= h5q_attr_write_str(f, "split", s->split);
    rc |= h5q_attr_write_num(f, "shard", H5T_NATIVE_INT64, &s->index);
    rc |= h5q_attr_write_num(f, "first_line", H5T_NATIVE_INT64, &s->first_line);
    rc |= h5q_attr_write_num(f, "last_line", H5T_NATIVE_INT64, &s->last_line);
    rc |= h5q_attr_write_num(f, "format", H5T_NATIVE_INT32, &format);
    rc |= h5q_write_1d(f, "pair_id", H5T_NATIVE_INT64, n, s->pair_id);
    rc |= h5q_write_1d(f, "prompt_off", H5T_NATIVE_INT64, n + 1, s->prompt_off);
    rc |= h5q_write_1d(f, "prompt", H5T_NATIVE_UINT8, s->prompt_off[n], s->prompt);
    rc |= h5q_write_1d(f, "chosen_off", H5T_NATIVE_INT64, n + 1, s->chosen_off);
    rc |= h5q_write_1d(f, "chosen", H5T_NATIVE_UINT8, s->chosen_off[n], s->chosen);
    rc |= h5q_write_1d(f, "rejected_off", H5T_NATIVE_INT64, n + 1, s->rejected_off);
    rc |= h5q_write_1d(f, "rejected", H5T_NATIVE_UINT8, s->rejected_off[n], s->rejected);
    rc |= h5q_write_1d(f, "turn_off", H5T_NATIVE_INT64, n + 1, s->turn_off);
    rc |= h5q_write_1d(f, "turn_role", H5T_NATIVE_UINT8, T, s->turn_role);
    rc |= h5q_write_1d(f, "text_off", H5T_NATIVE_INT64, T + 1, s->text_off);
    rc |= h5q_write_1d(f, "text", H5T_NATIVE_UINT8, s->text_off[T], s->text);
    rc |= h5q_write_1d(f, "pair_format", H5T_NATIVE_UINT8, n, fmt);
    if (s->extra_off && s->extra_off[n] > 0) {
        rc |= h5q_write_1d(f, "extra_off", H5T_NATIVE_INT64, n + 1, s->extra_off);
        rc |= h5q_write_1d(f, "extra", H5T_NATIVE_UINT8, s->extra_off[n], s->extra);
    }
    if (fmt != s->pair_format) free(fmt);
    return rc;
}

int shard_write(const Shard *s, const char *path) {
    qCheck(s->turn_off[s->n] == s->n_turns_total, "build shards with shard_builder_*",
           "shard %lld: turn_off[n] = %lld but n_turns_total = %lld", (long long)s->index,
           (long long)s->turn_off[s->n], (long long)s->n_turns_total);
    char *slash = strrchr(path, '/');
    if (slash) {
        char *dir = strndup(path, (size_t)(slash - path));
        mkdir_p(dir);
        free(dir);
    }
    /* The file is built in memory (core driver, no backing store) and its image written with
     * file_write_atomic: a full disk then fails one plain write(2) and leaves no HDF5 file handle half
     * closed (an H5Fclose that fails to flush keeps the file open, and HDF5 crashed closing it again at
     * MPI_Finalize). */
    char name[4096];
    snprintf(name, sizeof name, "%s.mem.%d", path, (int)getpid());
    H5E_auto2_t fn;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    int rc = fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 ? -1 : 0;
    hid_t f = rc == 0 ? H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) rc = -1;
    if (rc == 0) rc = write_contents(f, s);
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) rc = -1;
    ssize_t size = rc == 0 ? H5Fget_file_image(f, NULL, 0) : -1;
    char *image = size > 0 ? xmalloc((size_t)size) : NULL;
    if (!image || H5Fget_file_image(f, image, (size_t)size) != size) rc = -1;
    if (f >= 0 && H5Fclose(f) < 0) rc = -1;
    H5Eset_auto2(H5E_DEFAULT, fn, data);
    if (rc == 0 && file_write_atomic(path, image, (size_t)size) != 0) rc = -1;
    free(image);
    if (rc != 0) return quorum_input_error(path, "cannot write shard (disk full or folder not writable?)");
    return 0;
}

/* ---- read ---- */

typedef struct {
    FirstError e; /* path + "%s:%s": messages name file:dataset; the first one wins */
    hid_t f;
} Reader;

static int read_fail(Reader *r, const char *what, const char *msg) { return first_error(&r->e, what, msg); }

/* Reads 1-D dataset `name` into a fresh array of `expect` elements (expect < 0: any length, returned
 * in *n_out). One spare zero element so text arrays are NUL-terminated and empty arrays non-NULL. */
static void *read_dataset(Reader *r, const char *name, hid_t type, size_t elsize, int64_t expect, int64_t *n_out) {
    if (r->e.failed) return NULL;
    hid_t ds = H5Dopen2(r->f, name, H5P_DEFAULT);
    if (ds < 0) { read_fail(r, name, "dataset missing"); return NULL; }
    hid_t space = H5Dget_space(ds);
    hsize_t dims[1] = {0};
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank == 1) H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    void *buf = NULL;
    if (rank != 1) read_fail(r, name, "expected a 1-D dataset");
    else if (expect >= 0 && (int64_t)dims[0] != expect) {
        char msg[128];
        snprintf(msg, sizeof msg, "has %llu elements, expected %lld", (unsigned long long)dims[0], (long long)expect);
        read_fail(r, name, msg);
    } else {
        buf = xcalloc((size_t)dims[0] + 1, elsize);
        if (dims[0] > 0 && H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            read_fail(r, name, "read failed (truncated file?)");
            free(buf);
            buf = NULL;
        }
        if (n_out) *n_out = (int64_t)dims[0];
    }
    H5Dclose(ds);
    return buf;
}

static void read_attr(Reader *r, const char *name, hid_t type, void *out) {
    if (r->e.failed) return;
    hid_t a = H5Aopen(r->f, name, H5P_DEFAULT);
    if (a < 0 || H5Aread(a, type, out) < 0) read_fail(r, name, "attribute missing or unreadable");
    if (a >= 0) H5Aclose(a);
}

static void read_str_attr(Reader *r, const char *name, char *out, size_t cap) {
    if (r->e.failed) return;
    hid_t a = H5Aopen(r->f, name, H5P_DEFAULT);
    if (a < 0) { read_fail(r, name, "attribute missing"); return; }
    hid_t t = H5Aget_type(a);
    size_t n = H5Tget_size(t);
    if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) > 0 || n >= cap) {
        read_fail(r, name, "expected a fixed-length string attribute");
    } else {
        memset(out, 0, cap);
        if (H5Aread(a, t, out) < 0) read_fail(r, name, "attribute unreadable");
    }
    H5Tclose(t);
    H5Aclose(a);
}

/* Offsets must start at 0, never decrease, and end at the text length. */
static void check_offsets(Reader *r, const char *name, const int64_t *off, int64_t n, int64_t text_len) {
    if (r->e.failed) return;
    if (off[0] != 0) { read_fail(r, name, "first offset is not 0"); return; }
    for (int64_t i = 0; i < n; i++)
        if (off[i + 1] < off[i]) { read_fail(r, name, "offsets decrease"); return; }
    if (off[n] != text_len) read_fail(r, name, "last offset does not match the text length");
}

/* One offsets + bytes pair, e.g. prompt_off/prompt. */
static void read_text(Reader *r, const char *off_name, const char *name, int64_t n, int64_t **off, char **text) {
    int64_t len = 0;
    *off = read_dataset(r, off_name, H5T_NATIVE_INT64, 8, n + 1, NULL);
    *text = read_dataset(r, name, H5T_NATIVE_UINT8, 1, -1, &len);
    if (*off) check_offsets(r, off_name, *off, n, len);
}

static void read_contents(Reader *r, Shard *s) {
    int32_t format = -1;
    read_str_attr(r, "corpus", s->corpus, sizeof s->corpus);
    read_str_attr(r, "split", s->split, sizeof s->split);
    read_attr(r, "shard", H5T_NATIVE_INT64, &s->index);
    read_attr(r, "first_line", H5T_NATIVE_INT64, &s->first_line);
    read_attr(r, "last_line", H5T_NATIVE_INT64, &s->last_line);
    read_attr(r, "format", H5T_NATIVE_INT32, &format);
    s->format = format;
    if (!r->e.failed && (format < FORMAT_AUTO || format > FORMAT_PAIRS)) read_fail(r, "format", "unknown format code");
    s->pair_id = read_dataset(r, "pair_id", H5T_NATIVE_INT64, 8, -1, &s->n);
    read_text(r, "prompt_off", "prompt", s->n, &s->prompt_off, &s->prompt);
    read_text(r, "chosen_off", "chosen", s->n, &s->chosen_off, &s->chosen);
    read_text(r, "rejected_off", "rejected", s->n, &s->rejected_off, &s->rejected);
    s->turn_role = read_dataset(r, "turn_role", H5T_NATIVE_UINT8, 1, -1, &s->n_turns_total);
    s->turn_off = read_dataset(r, "turn_off", H5T_NATIVE_INT64, 8, s->n + 1, NULL);
    if (s->turn_off) check_offsets(r, "turn_off", s->turn_off, s->n, s->n_turns_total);
    read_text(r, "text_off", "text", s->n_turns_total, &s->text_off, &s->text);
    for (int64_t t = 0; !r->e.failed && t < s->n_turns_total; t++)
        if (s->turn_role[t] >= ROLE_COUNT) read_fail(r, "turn_role", "role code out of range");
    if (r->e.failed) return;
    if (H5Lexists(r->f, "pair_format", H5P_DEFAULT) > 0) {
        s->pair_format = read_dataset(r, "pair_format", H5T_NATIVE_UINT8, 1, s->n, NULL);
        for (int64_t i = 0; !r->e.failed && i < s->n; i++)
            if ((s->pair_format[i] & 0x3f) > FORMAT_PAIRS || (s->pair_format[i] >> 6) > 2)
                read_fail(r, "pair_format", "format code out of range");
    }
    if (!r->e.failed && H5Lexists(r->f, "extra_off", H5P_DEFAULT) > 0)
        read_text(r, "extra_off", "extra", s->n, &s->extra_off, &s->extra);
    for (int64_t i = 1; !r->e.failed && i < s->n; i++)
        if (s->pair_id[i] <= s->pair_id[i - 1]) { /* a duplicate would be one pair counted twice */
            char what[64], msg[160];
            snprintf(what, sizeof what, "%lld:pair_id", (long long)i);
            snprintf(msg, sizeof msg, "id %lld after %lld: ids not increasing (duplicate pair?)", (long long)s->pair_id[i],
                     (long long)s->pair_id[i - 1]);
            read_fail(r, what, msg);
        }
}

int shard_read(Shard *s, const char *path) {
    memset(s, 0, sizeof *s);
    Reader r = {{path, "%s:%s", 0}, -1};
    H5E_auto2_t fn;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    r.f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r.f < 0) {
        char where[4200];
        snprintf(where, sizeof where, "%s", path);
        quorum_input_error(where, "cannot open shard (missing, truncated or not HDF5)");
        r.e.failed = 1;
    } else {
        read_contents(&r, s);
        H5Fclose(r.f);
    }
    H5Eset_auto2(H5E_DEFAULT, fn, data);
    if (r.e.failed) {
        shard_free(s);
        return -1;
    }
    shard_index_turns(s);
    return 0;
}

/* ---- builder ---- */

void shard_builder_init(ShardBuilder *b, const char *corpus, const char *split, int64_t index,
                        int64_t first_line, int64_t last_line, int format) {
    memset(b, 0, sizeof *b);
    snprintf(b->s.corpus, sizeof b->s.corpus, "%s", corpus);
    snprintf(b->s.split, sizeof b->s.split, "%s", split);
    b->s.index = index;
    b->s.first_line = first_line;
    b->s.last_line = last_line;
    b->s.format = format;
    I64Vec *offs[] = {&b->prompt_off, &b->chosen_off, &b->rejected_off, &b->turn_off, &b->text_off, &b->extra_off};
    for (int i = 0; i < 6; i++) i64vec_push(offs[i], 0);
}

static void append_text(Buf *text, I64Vec *off, const char *p, int64_t n) {
    if (n > 0) buf_append(text, p, (size_t)n);
    i64vec_push(off, (int64_t)text->len);
}

void shard_builder_add(ShardBuilder *b, const Pair *p) {
    i64vec_push(&b->ids, p->id);
    append_text(&b->prompt, &b->prompt_off, p->prompt, p->prompt_len);
    append_text(&b->chosen, &b->chosen_off, p->chosen, p->chosen_len);
    append_text(&b->rejected, &b->rejected_off, p->rejected, p->rejected_len);
    for (int t = 0; t < p->n_turns; t++) {
        uint8_t role = (uint8_t)p->turns[t].role;
        buf_append(&b->roles, &role, 1);
        append_text(&b->text, &b->text_off, p->turns[t].text, p->turns[t].len);
    }
    i64vec_push(&b->turn_off, (int64_t)b->roles.len);
    uint8_t fmt = (uint8_t)(p->format | p->prompt_from << 6);
    buf_append(&b->formats, &fmt, 1);
    append_text(&b->extra, &b->extra_off, p->extra, p->extra_len);
}

/* A Buf's bytes as an owned, non-NULL array. */
static char *take_bytes(Buf *b) {
    char *p = b->data ? b->data : xcalloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
static int64_t *take_i64(I64Vec *v) {
    int64_t *p = v->data ? v->data : xcalloc(1, 8);
    v->data = NULL;
    v->len = v->cap = 0;
    return p;
}

void shard_builder_finish(ShardBuilder *b, Shard *out) {
    *out = b->s;
    out->n = (int64_t)b->ids.len;
    out->n_turns_total = (int64_t)b->roles.len;
    out->pair_id = take_i64(&b->ids);
    out->prompt_off = take_i64(&b->prompt_off);
    out->chosen_off = take_i64(&b->chosen_off);
    out->rejected_off = take_i64(&b->rejected_off);
    out->turn_off = take_i64(&b->turn_off);
    out->text_off = take_i64(&b->text_off);
    out->prompt = take_bytes(&b->prompt);
    out->chosen = take_bytes(&b->chosen);
    out->rejected = take_bytes(&b->rejected);
    out->text = take_bytes(&b->text);
    out->turn_role = (uint8_t *)take_bytes(&b->roles);
    out->pair_format = (uint8_t *)take_bytes(&b->formats);
    out->extra_off = take_i64(&b->extra_off);
    out->extra = take_bytes(&b->extra);
    out->turns = NULL;
    shard_index_turns(out);
    memset(b, 0, sizeof *b);
}
