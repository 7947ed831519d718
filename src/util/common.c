/* common.c - error handling, logging, buffers, files, checksums, UTF-8. See quorum/common.h. */
#define _GNU_SOURCE
#include "quorum/common.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

__attribute__((noreturn)) static void abort_job(int code) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    fflush(stdout);
    fflush(stderr);
    if (inited && !finalized) {
        int world = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &world);
        if (world > 1) MPI_Abort(MPI_COMM_WORLD, code);
    }
    exit(code);
}

void quorum_die_at(const char *file, int line, const char *hint, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (quorum_world() > 1)
        fprintf(stderr, "quorum: error: [rank %d] %s (%s:%d)%s%s%s\n", quorum_rank(), msg, file, line,
                hint ? " (hint: " : "", hint ? hint : "", hint ? ")" : "");
    else
        fprintf(stderr, "quorum: error: %s (%s:%d)%s%s%s\n", msg, file, line, hint ? " (hint: " : "",
                hint ? hint : "", hint ? ")" : "");
    abort_job(1);
}

void quorum_mpi_fail(int err, const char *file, int line) {
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(err, s, &n);
    quorum_die_at(file, line, "check mpirun arguments and that every rank is alive", "MPI failed: %s", s);
}

void *quorum_xmalloc(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) quorum_die_at(file, line, "reduce batch or shard size", "out of memory allocating %zu bytes", n);
    return p;
}
void *quorum_xcalloc(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) quorum_die_at(file, line, "reduce batch or shard size", "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}
void *quorum_xrealloc(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) quorum_die_at(file, line, "reduce batch or shard size", "out of memory reallocating %zu bytes", n);
    return q;
}
char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = xmalloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

static int errors_muted;

void quorum_mute_errors(int on) { errors_muted = on; }

int quorum_input_error(const char *where, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!errors_muted) fprintf(stderr, "quorum: error: %s: %s\n", where, msg);
    return -1;
}

int first_error(FirstError *e, const char *what, const char *msg) {
    if (!e->failed) {
        char where[4200];
        snprintf(where, sizeof where, e->where_fmt, e->path, what);
        quorum_input_error(where, "%s", msg);
    }
    e->failed = 1;
    return -1;
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

static void vlog(const char *prefix, const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "quorum: %s%s\n", prefix, msg);
}
void quorum_log(const char *fmt, ...) {
    if (quorum_rank() != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}
void quorum_log_all(const char *fmt, ...) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "[rank %d] ", quorum_rank());
    va_list ap;
    va_start(ap, fmt);
    vlog(prefix, fmt, ap);
    va_end(ap);
}
void quorum_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog("warning: ", fmt, ap);
    va_end(ap);
}

/* MPI is usable: initialised and not yet finalised (single-process tools never initialise it). */
static int mpi_live(void) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    return inited && !finalized;
}
int quorum_rank(void) {
    int r = 0;
    if (mpi_live()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}
int quorum_world(void) {
    int n = 1;
    if (mpi_live()) MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

/* ---- buffers ---- */
void buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}
void buf_append(Buf *b, const void *p, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}
void buf_append_str(Buf *b, const char *s) { buf_append(b, s, strlen(s)); }
void buf_appendf(Buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}
void buf_free(Buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
void i64vec_push(I64Vec *v, int64_t x) {
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->data = xrealloc(v->data, v->cap * sizeof(int64_t));
    }
    v->data[v->len++] = x;
}
void i64vec_free(I64Vec *v) {
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

/* ---- files ---- */
static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Inflates a whole gzip file held in memory: every member in turn (concatenated gzip, as `gzip -dc` reads
 * it). Anything that is not a complete member (a damaged or truncated one, or trailing bytes that are not
 * a gzip header) is an error: never a silently shorter result. */
static int gunzip_all(const unsigned char *in, size_t n, Buf *out, const char **err) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) { *err = "zlib init failed"; return -1; }
    size_t pos = 0;
    int rc = 0, members = 0;
    while (pos < n && rc == 0) {
        if (n - pos < 2 || in[pos] != 0x1f || in[pos + 1] != 0x8b) {
            *err = members ? "bytes after a gzip member that are not a gzip member (damaged file?)"
                           : "not a gzip file";
            rc = -1;
            break;
        }
        int zr = Z_OK;
        while (zr == Z_OK) {
            buf_reserve(out, 1 << 20);
            size_t in_now = n - pos > (1u << 30) ? (1u << 30) : n - pos;
            z.next_in = (unsigned char *)in + pos;
            z.avail_in = (uInt)in_now;
            z.next_out = (unsigned char *)out->data + out->len;
            z.avail_out = (uInt)(out->cap - out->len - 1);
            zr = inflate(&z, Z_NO_FLUSH);
            pos += in_now - z.avail_in;
            out->len = (size_t)((char *)z.next_out - out->data);
            if (zr == Z_BUF_ERROR && z.avail_in == 0) break;
        }
        if (zr != Z_STREAM_END) {
            *err = zr == Z_DATA_ERROR ? "corrupt gzip stream (damaged member)" : "truncated or corrupt gzip stream";
            rc = -1;
        }
        members++;
        inflateReset(&z);
    }
    inflateEnd(&z);
    return rc;
}

/* Inputs must be regular files: a FIFO or a device cannot be read twice (ingest reads every input on
 * every rank, freshness reads it again) and would give each reader different bytes. */
static int regular_file(const char *path, const char **err) {
    struct stat st;
    if (stat(path, &st) != 0) { *err = strerror(errno); return 0; }
    if (!S_ISREG(st.st_mode)) {
        *err = S_ISFIFO(st.st_mode) ? "a FIFO, not a regular file (inputs are read more than once)"
                                    : "not a regular file";
        return 0;
    }
    return 1;
}

char *file_read_all(const char *path, size_t *len, const char **err) {
    Buf b = {0};
    *err = NULL;
    if (!regular_file(path, err)) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) { *err = strerror(errno); return NULL; }
    for (;;) {
        buf_reserve(&b, 1 << 20);
        size_t n = fread(b.data + b.len, 1, 1 << 20, f);
        b.len += n;
        if (n == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { *err = "read error"; buf_free(&b); return NULL; }
    if (ends_with(path, ".gz")) {
        Buf z = {0};
        int rc = gunzip_all((const unsigned char *)b.data, b.len, &z, err);
        buf_free(&b);
        if (rc) { buf_free(&z); return NULL; }
        b = z;
    }
    buf_reserve(&b, 0);
    b.data[b.len] = 0;
    *len = b.len;
    return b.data;
}

int mkdir_p(const char *path) {
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) { free(p); return -1; }
            *s = '/';
        }
    }
    int rc = (mkdir(p, 0755) != 0 && errno != EEXIST) ? -1 : 0;
    free(p);
    return rc;
}

static int mkdir_parent(const char *path) {
    char *p = xstrdup(path);
    char *slash = strrchr(p, '/');
    int rc = 0;
    if (slash && slash != p) { *slash = 0; rc = mkdir_p(p); }
    free(p);
    return rc;
}

int file_write_atomic(const char *path, const void *data, size_t len) {
    if (mkdir_parent(path) != 0) return -1;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) { unlink(tmp); return -1; }
    if (rename(tmp, path) != 0) { unlink(tmp); return -1; }
    return 0;
}

int json_write_atomic(const char *path, const cJSON *doc) {
    char *text = cJSON_Print(doc);
    Buf b = {0};
    buf_append_str(&b, text ? text : "");
    buf_append_str(&b, "\n");
    cJSON_free(text);
    int rc = text && file_write_atomic(path, b.data, b.len) == 0 ? 0 : -1;
    if (rc) quorum_input_error(path, "cannot write (disk full or no permission?)");
    buf_free(&b);
    return rc;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

void dir_remove_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = path_join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

void dir_remove_shards_from(const char *dir, int64_t n_shards) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long long k = -1;
        char tail[8] = "";
        if (sscanf(e->d_name, "shard-%lld%7s", &k, tail) != 2 || strcmp(tail, ".h5") || k < n_shards) continue;
        char *p = path_join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
}

char *path_join(const char *a, const char *b) {
    size_t n = strlen(a);
    Buf r = {0};
    buf_append_str(&r, a);
    if (n && a[n - 1] != '/') buf_append_str(&r, "/");
    buf_append_str(&r, b);
    return r.data;
}

uint64_t fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int utf8_valid(const char *str, size_t n, size_t *bad_offset) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else goto bad;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
        i += k + 1;
    }
    return 1;
bad:
    if (bad_offset) *bad_offset = i;
    return 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
