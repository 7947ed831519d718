/*
 * quorum/h5.h - the one HDF5 helper layer (src/util/h5.c) every stage's files use: corpus shards,
 * score files, votes files, the DPO reference log-prob cache.
 *
 * Error conventions:
 *  - Readers never trust a file: every read checks rank and dims against what the caller expects and
 *    reports "file:/dataset: expected ..., found ..." on one line (quorum_input_error) instead of
 *    crashing, then returns -1. A caller that reads many fields keeps only the first such error
 *    (FirstError in quorum/common.h).
 *  - Writers return -1 without a message; the caller names the file it was writing.
 *  - Datasets are created without object timestamps: identical content gives identical bytes, so
 *    outputs can be checksummed.
 * Writers take an optional MPI-IO transfer list so the same code writes a serial file (H5P_DEFAULT)
 * and a collective slab (votes).
 */
#ifndef QUORUM_H5_H
#define QUORUM_H5_H

#include <hdf5.h>
#include <stdint.h>

/* Collective over MPI_COMM_WORLD: creates (truncates) a file that every rank writes a slab of, through
 * MPI-IO. Returns the file (negative on this rank's failure, no message: the caller agrees on failure
 * across ranks and names the file) and sets *dxpl to a collective transfer list (H5Pclose it). */
hid_t h5q_create_collective(const char *path, hid_t *dxpl);

/* Silences HDF5's own error-stack printing (we print one line of our own instead). */
void h5q_quiet(void);

/* Attributes on a file or object. Strings are fixed-length, NUL-terminated (h5py reads them as bytes). */
int h5q_attr_write_str(hid_t obj, const char *name, const char *s);
int h5q_attr_write_num(hid_t obj, const char *name, hid_t type, const void *value);
/* Reads attribute `name` converted to `memtype` (a native numeric type). 0 or -1 after a message. */
int h5q_attr_read_num(hid_t obj, const char *file, const char *name, hid_t memtype, void *value);
int h5q_attr_read_str(hid_t obj, const char *file, const char *name, char *out, size_t cap);

/* Creates dataset `name` of full shape dims[rank] and writes this caller's slab: rows [0, dims[0]) of
 * a 2-D dataset or the whole of a 1-D one, columns / elements [start, start+count). count may be 0
 * (the rank still takes part when dxpl is collective). `buf` is contiguous (rows x count). */
int h5q_write_slab(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims,
                   hsize_t start, hsize_t count, const void *buf, hid_t dxpl);
/* The whole 1-D dataset `name` of n elements, serial (h5q_write_slab of all of it). */
int h5q_write_1d(hid_t file, const char *name, hid_t type, int64_t n, const void *buf);

/* Dims of dataset `name`, checked to have `rank` dimensions. 0 or -1 after a message naming file:/name. */
int h5q_dims(hid_t file, const char *fname, const char *name, int rank, hsize_t *dims);
/* Reads the whole dataset `name` as memtype after checking its shape equals dims[rank]. 0 or -1. */
int h5q_read_all(hid_t file, const char *fname, const char *name, hid_t memtype, int rank,
                 const hsize_t *dims, void *buf);

#endif /* QUORUM_H5_H */
