/*
 * quorum/common.h - error handling, logging and small utilities shared by every stage.
 *
 * Two kinds of failure, two kinds of message:
 *  - A bug or a library failure (MPI, HDF5, cuBLAS ...): one xxxCheck macro per library that prints
 *    file:line of the *quorum* source, the library's own message, and a hint, then aborts the MPI job.
 *  - Bad user input (a malformed JSONL line, a truncated safetensors file, a wrong job key): a one-line
 *    error that names the input file, the record and the field, via quorum_input_error(). The caller
 *    decides whether to count it in a rejects ledger or to stop.
 *
 * Every message starts with "quorum: " so it can be grepped out of interleaved MPI/SLURM logs.
 */
#ifndef QUORUM_COMMON_H
#define QUORUM_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Prints "quorum: error: <file>:<line>: <msg> (hint: <hint>)" and aborts the whole MPI job (or exits
 * when MPI is not initialised). Never returns. */
void quorum_die_at(const char *file, int line, const char *hint, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* Generic check: qCheck(cond, hint, fmt, ...). */
#define qCheck(cond, hint, ...) \
    do { if (!(cond)) quorum_die_at(__FILE__, __LINE__, (hint), __VA_ARGS__); } while (0)

/* MPI: mpiCheck(MPI_Xxx(...)); prints MPI_Error_string. Defined in common.c to keep mpi.h out of here. */
void quorum_mpi_fail(int err, const char *file, int line) __attribute__((noreturn));
#define mpiCheck(call) \
    do { int mpi_err_ = (call); if (mpi_err_ != 0) quorum_mpi_fail(mpi_err_, __FILE__, __LINE__); } while (0)

/* HDF5: every H5 call returns a negative value (herr_t or hid_t) on failure. */
#define h5Check(call, what) \
    do { if ((long long)(call) < 0) \
        quorum_die_at(__FILE__, __LINE__, "check the file is a complete quorum HDF5 file and the disk is not full", \
                      "HDF5 failed: %s", (what)); } while (0)

/* Memory: an allocation that fails is fatal. */
#define xmalloc(n)     quorum_xmalloc((n), __FILE__, __LINE__)
#define xcalloc(n, s)  quorum_xcalloc((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) quorum_xrealloc((p), (n), __FILE__, __LINE__)
void *quorum_xmalloc(size_t n, const char *file, int line);
void *quorum_xcalloc(size_t n, size_t size, const char *file, int line);
void *quorum_xrealloc(void *p, size_t n, const char *file, int line);
char *xstrdup(const char *s);

/* Bad user input. Prints "quorum: error: <where>: <msg>" to stderr (unless muted, below). `where` is
 * "file:record:field" style, built by the caller. Returns -1 so callers can `return quorum_input_error(...)`. */
int quorum_input_error(const char *where, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* First error wins: a reader that checks many fields of one file reports only the first failure (the
 * later ones follow from it) and then skips its remaining reads. `where_fmt` turns (path, what) into
 * the message's place, e.g. "%s:%s" (file:dataset) or "%s: key \"%s\"" (file: key "k"). */
typedef struct {
    const char *path;
    const char *where_fmt;
    int failed;
} FirstError;
/* Prints "quorum: error: <where>: <msg>" unless an error was already reported; sets failed; returns -1. */
int first_error(FirstError *e, const char *what, const char *msg);
/* While on, quorum_input_error prints nothing: for work every rank repeats (reading the job file), so an
 * error every rank hits is printed once, by rank 0. */
void quorum_mute_errors(int on);

/* Logging on rank 0 only (quorum_log) or every rank (quorum_log_all). Both go to stderr, line-buffered. */
void quorum_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void quorum_log_all(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void quorum_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* MPI world, cached after quorum_mpi_init(). Single-process runs are rank 0 of 1. */
int quorum_rank(void);
int quorum_world(void);

/* Growable byte buffer: the workhorse for flat text arrays (uint8 bytes + int64 offsets). */
typedef struct {
    char *data;
    size_t len, cap;
} Buf;
void buf_reserve(Buf *b, size_t extra);
void buf_append(Buf *b, const void *p, size_t n);
void buf_append_str(Buf *b, const char *s);
void buf_appendf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(Buf *b);

/* Growable int64 vector. */
typedef struct {
    int64_t *data;
    size_t len, cap;
} I64Vec;
void i64vec_push(I64Vec *v, int64_t x);
void i64vec_free(I64Vec *v);

/* Files. */
/* Reads a whole file (gzip-compressed when the name ends in .gz). Returns NULL and sets *err (static
 * string) on failure. The result is NUL-terminated; *len excludes the NUL. */
char *file_read_all(const char *path, size_t *len, const char **err);
/* Writes `data` to path atomically: path.tmp.<pid> then rename(2). Creates parent dirs. 0 on success. */
int file_write_atomic(const char *path, const void *data, size_t len);
/* mkdir -p. 0 on success. */
int mkdir_p(const char *path);
int file_exists(const char *path);
/* Removes a folder holding plain files only (model folders, checkpoints): its files, then itself. */
void dir_remove_flat(const char *dir);
/* Removes dir/shard-NNNNN.h5 for every NNNNN >= n_shards: what a run over a longer input left, which
 * would sit beside a manifest that does not list it. */
void dir_remove_shards_from(const char *dir, int64_t n_shards);
/* Joins two path pieces into a new string. */
char *path_join(const char *a, const char *b);

/* JSON documents (cJSON): printed formatted with a final newline and written with file_write_atomic.
 * 0, or -1 after one line naming the path. */
struct cJSON;
int json_write_atomic(const char *path, const struct cJSON *doc);

/* Command lines: true when argv[1..] has -h or --help (every subcommand's usage switch). */
int cli_wants_help(int argc, char **argv);

/* Checksums: FNV-1a 64-bit (cheap, stable, used in manifests to detect shard/manifest disagreement). */
uint64_t fnv1a64(const void *data, size_t n, uint64_t h);
#define FNV1A64_INIT 0xcbf29ce484222325ULL

/* UTF-8: 1 when s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF); else 0 and
 * *bad_offset set to the first bad byte. */
int utf8_valid(const char *s, size_t n, size_t *bad_offset);

/* Wall clock in seconds (monotonic). */
double now_seconds(void);

#ifdef __cplusplus
}
#endif
#endif /* QUORUM_COMMON_H */
