/* reader.c - streams JSONL lines or top-level JSON array elements, plain or gzip (see reader.h). */
#include "reader.h"
#include "quorum/corpus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BLOCK (1 << 20)

size_t json_scan(JsonScan *st, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (st->in_string) {
            if (st->escape) st->escape = 0;
            else if (ch == '\\') st->escape = 1;
            else if (ch == '"') st->in_string = 0;
        } else if (ch == '"') st->in_string = 1;
        else if (ch == '{' || ch == '[') st->depth++;
        else if (ch == '}' || ch == ']') {
            if (st->depth == 0) return i;
            st->depth--;
        } else if (ch == ',' && st->depth == 0) return i;
    }
    return n;
}

static int fail(RecordReader *r, const char *msg) {
    snprintf(r->err, sizeof r->err, "%s", msg);
    return -1;
}

/* Reads the next block into the window (dropping what was consumed). >0 bytes, 0 at EOF, -1 error. */
static int fill(RecordReader *r) {
    if (r->eof) return 0;
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->len -= r->start;
        r->start = 0;
    }
    if (r->cap - r->len < BLOCK) {
        r->cap = r->len + BLOCK;
        r->buf = xrealloc(r->buf, r->cap);
    }
    int n = gzread(r->g, r->buf + r->len, BLOCK);
    if (n < 0) {
        int e;
        const char *m = gzerror(r->g, &e);
        return fail(r, e == Z_ERRNO ? strerror(errno) : m);
    }
    if (n == 0) {
        int e = Z_OK;
        gzerror(r->g, &e); /* gzread reports a truncated stream only through gzerror at EOF */
        if (e != Z_OK && e != Z_STREAM_END) return fail(r, "truncated or corrupt gzip stream");
        r->eof = 1;
        return 0;
    }
    r->checksum = fnv1a64(r->buf + r->len, (size_t)n, r->checksum);
    r->bytes += n;
    r->len += (size_t)n;
    return n;
}

static int is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

/* Skips whitespace; 1 when a byte is available at r->start, 0 at EOF, -1 on error. */
static int skip_ws(RecordReader *r) {
    for (;;) {
        while (r->start < r->len && is_ws(r->buf[r->start])) r->start++;
        if (r->start < r->len) return 1;
        int n = fill(r);
        if (n <= 0) return n;
    }
}

int reader_open(RecordReader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->checksum = FNV1A64_INIT;
    /* A regular file only: ingest reads every input on every rank, and freshness reads it again; a FIFO
     * or a device would give each reader different bytes. */
    struct stat st;
    if (stat(path, &st) != 0) return fail(r, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(r, S_ISFIFO(st.st_mode) ? "a FIFO, not a regular file (inputs are read more than once)"
                                            : "not a regular file");
    r->g = gzopen(path, "rb");
    if (!r->g) return fail(r, strerror(errno ? errno : ENOMEM));
    gzbuffer(r->g, 1 << 17);
    while (r->len < 3 && !r->eof)
        if (fill(r) < 0) return -1;
    r->gzip = !gzdirect(r->g);
    if (r->len >= 3 && !memcmp(r->buf, "\xEF\xBB\xBF", 3)) r->start = 3; /* UTF-8 BOM */
    size_t i = r->start; /* sniff without consuming: JSONL's leading blank lines are records */
    for (;;) {
        while (i < r->len && is_ws(r->buf[i])) i++;
        if (i < r->len || r->eof) break;
        size_t rel = i - r->start;
        if (fill(r) < 0) return -1;
        i = r->start + rel;
    }
    if (i < r->len && r->buf[i] == '[') {
        r->kind = CONTAINER_ARRAY;
        r->start = i + 1;
    }
    return 0;
}

static int next_line(RecordReader *r, const char **rec, size_t *n) {
    size_t scanned = 0;
    for (;;) {
        const char *p = r->buf + r->start + scanned;
        const char *nl = memchr(p, '\n', r->len - r->start - scanned);
        if (nl) {
            *rec = r->buf + r->start;
            *n = (size_t)(nl - *rec);
            r->start += *n + 1;
            return 1;
        }
        scanned = r->len - r->start;
        if (r->eof) {
            r->done = 1;
            if (scanned == 0) return 0;
            *rec = r->buf + r->start;
            *n = scanned;
            r->start = r->len;
            return 1;
        }
        if (fill(r) < 0) return -1;
    }
}

static int next_element(RecordReader *r, const char **rec, size_t *n) {
    int got = skip_ws(r);
    if (got < 0) return -1;
    if (got == 0) return fail(r, "the JSON array is not closed (truncated file?)");
    if (r->buf[r->start] == ']') { /* [] or a trailing comma */
        r->start++;
        r->done = 1;
        return 0;
    }
    JsonScan st = {0};
    size_t scanned = 0;
    for (;;) {
        size_t avail = r->len - r->start - scanned;
        size_t off = json_scan(&st, r->buf + r->start + scanned, avail);
        if (off < avail) {
            size_t end = r->start + scanned + off;
            *rec = r->buf + r->start;
            *n = end - r->start;
            if (r->buf[end] == ']') r->done = 1;
            r->start = end + 1;
            return 1;
        }
        scanned += avail;
        if (r->eof) return fail(r, "the JSON array is not closed (truncated file?)");
        if (fill(r) < 0) return -1;
    }
}

int reader_next(RecordReader *r, const char **rec, size_t *len) {
    if (r->done) return 0;
    return r->kind == CONTAINER_ARRAY ? next_element(r, rec, len) : next_line(r, rec, len);
}

int reader_drain(RecordReader *r) {
    const char *rec;
    size_t n;
    int rc;
    while ((rc = reader_next(r, &rec, &n)) == 1) {}
    if (rc < 0) return -1;
    if (r->kind == CONTAINER_ARRAY) {
        int got = skip_ws(r);
        if (got < 0) return -1;
        if (got == 1) return fail(r, "text after the JSON array's closing ']'");
    }
    while (!r->eof) {
        r->start = r->len;
        if (fill(r) < 0) return -1;
    }
    return 0;
}

void reader_close(RecordReader *r) {
    if (r->g) gzclose(r->g);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

const char *reader_describe(const RecordReader *r) {
    if (r->kind == CONTAINER_ARRAY) return r->gzip ? "gzip JSON array" : "JSON array";
    return r->gzip ? "gzip JSONL" : "JSONL";
}

int corpus_source_scan(const char *path, int64_t max_pairs, uint64_t *checksum, int64_t *records, const char **err) {
    static char msg[256];
    RecordReader r;
    const char *rec;
    size_t len;
    int64_t n = 0;
    int rc = reader_open(&r, path);
    while (rc == 0 && (max_pairs <= 0 || n < max_pairs)) {
        int got = reader_next(&r, &rec, &len);
        if (got <= 0) { rc = got; break; }
        n++;
    }
    if (rc == 0) rc = reader_drain(&r);
    snprintf(msg, sizeof msg, "%s", r.err);
    *err = rc ? msg : NULL;
    *checksum = r.checksum;
    *records = n;
    reader_close(&r);
    return rc ? -1 : 0;
}
