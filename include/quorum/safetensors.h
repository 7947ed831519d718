/*
 * quorum/safetensors.h - Hugging Face safetensors: validated mmap reader, F32 writer.
 *
 * File format: u64 little-endian header length N, N bytes of JSON object
 *   { "<tensor name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *     "__metadata__": {"format": "pt"} }
 * then the data section; offsets are relative to its start.
 *
 * The reader trusts nothing: header length within the file, a JSON object, every dtype known, shape
 * product * dtype size == end - begin, offsets inside the data section, ranges non-overlapping (checked
 * after sorting by begin). Any violation is ONE line "quorum: error: <file>:<tensor>:<field>: ..." and
 * a -1 return; nothing is half-loaded. Sharded checkpoints are read through model.safetensors.index.json
 * ({"weight_map": {"<tensor>": "<shard file>"}}); every named tensor must be in its shard.
 * F32, F16 and BF16 tensors convert to fp32 on read; other known dtypes can be listed but not read.
 * The writer stores F32 or BF16.
 */
#ifndef QUORUM_SAFETENSORS_H
#define QUORUM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* same cap as the reference implementation */

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL } StDtype;

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* into the file's mapping */
    size_t nbytes;
    int file;            /* index into SafeTensors.paths */
} StTensor;

typedef struct {
    int n_files;
    char **paths;
    void **maps;
    size_t *map_len;
    int n;
    StTensor *t;
} SafeTensors;

/* Opens `path`: a .safetensors file, a model.safetensors.index.json, or a folder holding either
 * (model.safetensors preferred). 0 or -1 after a one-line error; on -1 *st holds nothing to free. */
int safetensors_open(SafeTensors *st, const char *path);
void safetensors_close(SafeTensors *st);
/* NULL when absent. */
const StTensor *safetensors_find(const SafeTensors *st, const char *name);
/* Converts t to fp32 into out[t->numel]. -1 (one line naming file and tensor) for a non-float dtype. */
int safetensors_read_f32(const SafeTensors *st, const StTensor *t, float *out);
/* Elements [first, first+count) of t as fp32 into out[count] (a model loads a big tensor in slices through
 * one small buffer instead of widening it whole). Same errors. */
int safetensors_read_f32_range(const SafeTensors *st, const StTensor *t, int64_t first, int64_t count, float *out);
/* Drops t's pages of the mapping from memory (they are re-read from the file if touched again): a loader
 * that has copied t calls it so the peak RSS of a load is the model, not the model plus the file. */
void safetensors_release(const SafeTensors *st, const StTensor *t);
const char *safetensors_dtype_name(StDtype d);

/* One tensor to write (fp32 data, row-major), stored as dtype: ST_F32 (0, the default) or ST_BF16
 * (rounded to nearest even). */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
    StDtype dtype;
} StWrite;

/* Writes the tensors into folder `dir` (must exist) as F32/BF16 (StWrite.dtype) with __metadata__ {"format":"pt"}:
 * model.safetensors when the total data is <= max_shard_bytes (0 = no limit), else
 * model-00001-of-0000K.safetensors ... plus model.safetensors.index.json. Tensors are never split;
 * each file is written to a temp name and renamed. 0 or -1. */
int safetensors_write(const char *dir, const StWrite *ts, int n, size_t max_shard_bytes);
/* All n tensors into one file dir/file (e.g. a PEFT "adapter_model.safetensors"), F32, temp + rename. 0 or -1. */
int safetensors_write_file(const char *dir, const char *file, const StWrite *ts, int n);

#endif /* QUORUM_SAFETENSORS_H */
