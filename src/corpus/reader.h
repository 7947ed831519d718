/* reader.h - streams the records of a corpus file (internal to src/corpus).
 *
 * Containers, detected from the first non-blank byte of the decompressed stream (a UTF-8 BOM is
 * skipped): '[' -> a JSON array whose elements are the records, anything else -> JSONL (one record per
 * line). Either may be gzip-compressed (detected from the gzip magic, not the name). The file is read
 * in 1 MiB blocks: memory holds one block plus the longest record, never the whole file.
 *
 * Records are numbered from 1: JSONL line numbers (blank lines count), or array element numbers.
 * The array scanner splits at top-level commas only (strings and nested brackets tracked); each element
 * is handed to cJSON by the caller, so a bad element is one rejected record, not a failed file. A stream
 * that ends inside the array, or text after its closing ']', is a file error (reader_error).
 */
#ifndef QUORUM_CORPUS_READER_H
#define QUORUM_CORPUS_READER_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "quorum/common.h"

typedef enum { CONTAINER_JSONL = 0, CONTAINER_ARRAY } Container;

/* Resumable JSON bracket scanner: finds the end of one value inside a stream. */
typedef struct {
    int depth, in_string, escape;
} JsonScan;
/* Scans s[0..n) from state `st`; returns the offset of the first ',' (or closing bracket that would
 * make the depth negative) outside strings at depth 0, or n when the value goes on. */
size_t json_scan(JsonScan *st, const char *s, size_t n);

typedef struct {
    gzFile g;
    Container kind;
    int gzip;
    char *buf;              /* window over the stream: buf[start..len) is unread */
    size_t cap, len, start;
    int eof, done;          /* eof: the stream is exhausted; done: no more records */
    uint64_t checksum;      /* FNV-1a of every decompressed byte read so far */
    int64_t bytes;
    char err[256];          /* set when reader_next returned -1 */
} RecordReader;

/* Opens and sniffs the file. 0, or -1 with r->err set. */
int reader_open(RecordReader *r, const char *path);
/* The next record (view valid until the next call): 1, 0 at the end, -1 on a stream error. */
int reader_next(RecordReader *r, const char **rec, size_t *len);
/* Reads the rest of the stream (checksum of the whole input, trailing-data checks). 0 or -1. */
int reader_drain(RecordReader *r);
void reader_close(RecordReader *r);
/* "JSONL", "gzip JSONL", "JSON array", "gzip JSON array" */
const char *reader_describe(const RecordReader *r);

#endif
