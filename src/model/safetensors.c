/* safetensors.c - validated mmap reader and F32 (optionally sharded) writer. See quorum/safetensors.h. */
#define _GNU_SOURCE
#include "quorum/safetensors.h"
#include "quorum/common.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct { const char *name; int size; } DTYPES[] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},   [ST_BOOL] = {"BOOL", 1},
};
#define N_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

const char *safetensors_dtype_name(StDtype d) { return DTYPES[d].name; }

static int st_err(const char *file, const char *tensor, const char *field, const char *msg, ...)
    __attribute__((format(printf, 4, 5)));
static int st_err(const char *file, const char *tensor, const char *field, const char *msg, ...) {
    char where[1024], text[512];
    va_list ap;
    va_start(ap, msg);
    vsnprintf(text, sizeof text, msg, ap);
    va_end(ap);
    if (tensor) snprintf(where, sizeof where, "%s:tensor \"%s\"%s%s", file, tensor, field ? ":" : "", field ? field : "");
    else snprintf(where, sizeof where, "%s:header%s%s", file, field ? ":" : "", field ? field : "");
    return quorum_input_error(where, "%s", text);
}

void safetensors_close(SafeTensors *st) {
    for (int i = 0; i < st->n; i++) free(st->t[i].name);
    for (int f = 0; f < st->n_files; f++) {
        if (st->maps && st->maps[f]) munmap(st->maps[f], st->map_len[f]);
        free(st->paths[f]);
    }
    free(st->t);
    free(st->paths);
    free(st->maps);
    free(st->map_len);
    memset(st, 0, sizeof *st);
}

static int cmp_by_offset(const void *a, const void *b) {
    const StTensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* Parses one tensor entry of a header; appends to st. */
static int parse_entry(SafeTensors *st, const char *path, const cJSON *e, const uint8_t *data, size_t data_len) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return st_err(path, name, NULL, "entry is not a JSON object");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return st_err(path, name, "dtype", "missing or not a string");
    int d = -1;
    for (int i = 0; i < N_DTYPES; i++)
        if (!strcmp(dt->valuestring, DTYPES[i].name)) d = i;
    if (d < 0) return st_err(path, name, "dtype", "unknown dtype \"%s\"", dt->valuestring);
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > ST_MAX_DIMS)
        return st_err(path, name, "shape", "missing, not an array, or more than %d dims", ST_MAX_DIMS);
    StTensor t = {.dtype = d, .ndim = cJSON_GetArraySize(sh), .numel = 1, .file = st->n_files - 1};
    int i = 0;
    for (const cJSON *x = sh->child; x; x = x->next, i++) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble != (double)(int64_t)x->valuedouble ||
            x->valuedouble > 1e15)
            return st_err(path, name, "shape", "dim %d is not a non-negative integer", i);
        t.shape[i] = (int64_t)x->valuedouble;
        t.numel *= t.shape[i];
        if (t.numel > (int64_t)1 << 50) return st_err(path, name, "shape", "absurd element count");
    }
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !cJSON_IsNumber(of->child) ||
        !cJSON_IsNumber(of->child->next) || of->child->valuedouble < 0 ||
        of->child->next->valuedouble < of->child->valuedouble)
        return st_err(path, name, "data_offsets", "must be [begin, end] with 0 <= begin <= end");
    double b = of->child->valuedouble, en = of->child->next->valuedouble;
    if (en > (double)data_len)
        return st_err(path, name, "data_offsets", "[%.0f, %.0f] past the end of the data section (%zu bytes): "
                      "file truncated?", b, en, data_len);
    if ((double)t.numel * DTYPES[d].size != en - b)
        return st_err(path, name, "data_offsets", "byte range %.0f != shape product %lld x %d bytes (%s)",
                      en - b, (long long)t.numel, DTYPES[d].size, DTYPES[d].name);
    t.data = data + (size_t)b;
    t.nbytes = (size_t)(en - b);
    t.name = xstrdup(name);
    st->t = xrealloc(st->t, sizeof(StTensor) * (st->n + 1));
    st->t[st->n++] = t;
    return 0;
}

/* Maps one .safetensors file and appends its validated tensors. */
static int open_file(SafeTensors *st, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return st_err(path, NULL, NULL, "cannot open file");
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 8) {
        close(fd);
        return st_err(path, NULL, NULL, "file shorter than the 8-byte header length: truncated?");
    }
    size_t len = (size_t)sb.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return st_err(path, NULL, NULL, "mmap failed");
    int f = st->n_files++;
    st->paths = xrealloc(st->paths, sizeof(char *) * st->n_files);
    st->maps = xrealloc(st->maps, sizeof(void *) * st->n_files);
    st->map_len = xrealloc(st->map_len, sizeof(size_t) * st->n_files);
    st->paths[f] = xstrdup(path);
    st->maps[f] = map;
    st->map_len[f] = len;

    const uint8_t *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > ST_MAX_HEADER || hlen > len - 8)
        return st_err(path, NULL, "header_length", "%llu bytes but the file has %zu after it: truncated or not "
                      "a safetensors file", (unsigned long long)hlen, len - 8);
    cJSON *h = cJSON_ParseWithLength((const char *)p + 8, (size_t)hlen);
    if (!h || !cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return st_err(path, NULL, NULL, "header is not a JSON object (bad JSON or cut header)");
    }
    const uint8_t *data = p + 8 + hlen;
    size_t data_len = len - 8 - hlen;
    int first = st->n, rc = 0;
    for (const cJSON *e = h->child; e && !rc; e = e->next)
        if (strcmp(e->string, "__metadata__")) rc = parse_entry(st, path, e, data, data_len);
    cJSON_Delete(h);
    if (rc) return -1;
    if (st->n > first) qsort(st->t + first, st->n - first, sizeof(StTensor), cmp_by_offset); /* t is NULL when empty */
    for (int i = first + 1; i < st->n; i++)
        if (st->t[i].data < st->t[i - 1].data + st->t[i - 1].nbytes)
            return st_err(path, st->t[i].name, "data_offsets", "overlaps tensor \"%s\"", st->t[i - 1].name);
    return 0;
}

static int open_index(SafeTensors *st, const char *index_path) {
    const char *err = NULL;
    size_t len;
    char *text = file_read_all(index_path, &len, &err);
    if (!text) return st_err(index_path, NULL, NULL, "cannot read: %s", err ? err : "?");
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *wm = j ? cJSON_GetObjectItemCaseSensitive(j, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(j);
        return st_err(index_path, NULL, "weight_map", "bad JSON or no \"weight_map\" object");
    }
    char *dir = xstrdup(index_path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else dir[0] = 0;
    int rc = 0;
    for (const cJSON *e = wm->child; e && !rc; e = e->next) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) {
            rc = st_err(index_path, e->string, "weight_map", "shard must be a plain file name");
            break;
        }
        char *shard = path_join(dir, e->valuestring);
        int seen = 0;
        for (int f = 0; f < st->n_files; f++) seen |= !strcmp(st->paths[f], shard);
        if (!seen) rc = open_file(st, shard);
        if (!rc && !safetensors_find(st, e->string))
            rc = st_err(shard, e->string, NULL, "listed in %s but not in the shard", index_path);
        free(shard);
    }
    free(dir);
    cJSON_Delete(j);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int safetensors_open(SafeTensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    struct stat sb;
    int rc;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char *single = path_join(path, "model.safetensors");
        char *index = path_join(path, "model.safetensors.index.json");
        if (file_exists(single)) rc = open_file(st, single);
        else if (file_exists(index)) rc = open_index(st, index);
        else rc = st_err(path, NULL, NULL, "no model.safetensors or model.safetensors.index.json in folder");
        free(single);
        free(index);
    } else if (ends_with(path, ".json")) {
        rc = open_index(st, path);
    } else {
        rc = open_file(st, path);
    }
    if (rc) safetensors_close(st);
    return rc;
}

const StTensor *safetensors_find(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->t[i].name, name)) return &st->t[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);        /* inf / nan */
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);  /* normal */
    else if (!man) bits = sign;                                     /* zero */
    else {                                                          /* subnormal: renormalise */
        int e = -1;
        do { e++; man <<= 1; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int safetensors_read_f32_range(const SafeTensors *st, const StTensor *t, int64_t first, int64_t count, float *out) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32: memcpy(out, p + 4 * first, 4 * (size_t)count); return 0; /* little-endian host assumed (x86, arm64) */
    case ST_F16:
        for (int64_t i = first; i < first + count; i++)
            out[i - first] = half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case ST_BF16:
        for (int64_t i = first; i < first + count; i++) {
            uint32_t bits = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
            memcpy(&out[i - first], &bits, 4);
        }
        return 0;
    default:
        return st_err(st->paths[t->file], t->name, "dtype", "%s cannot be read as float (F32/F16/BF16 only)",
                      DTYPES[t->dtype].name);
    }
}

int safetensors_read_f32(const SafeTensors *st, const StTensor *t, float *out) {
    return safetensors_read_f32_range(st, t, 0, t->numel, out);
}

void safetensors_release(const SafeTensors *st, const StTensor *t) {
    (void)st;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)t->data + page - 1) & ~(uintptr_t)(page - 1); /* whole pages inside the tensor */
    uintptr_t hi = ((uintptr_t)t->data + t->nbytes) & ~(uintptr_t)(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* read-only private mapping: pages re-read on demand */
}

static uint16_t f32_to_bf16(float f) { /* round to nearest even; NaN stays a (quiet) NaN */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* ---- writer ---- */

/* fp32 data rounded to bf16, through a small buffer. 1 on success. */
static int write_bf16(FILE *fp, const float *x, size_t n) {
    uint16_t buf[4096];
    for (size_t i = 0; i < n; i += 4096) {
        size_t k = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < k; j++) buf[j] = f32_to_bf16(x[i + j]);
        if (fwrite(buf, 2, k, fp) != k) return 0;
    }
    return 1;
}

/* Writes tensors [i0,i1) as one file `name` in dir. */
static int write_file(const char *dir, const char *name, const StWrite *ts, int i0, int i1) {
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t off = 0;
    for (int i = i0; i < i1; i++) {
        size_t nb = ts[i].dtype == ST_BF16 ? 2 : sizeof(float);
        cJSON *e = cJSON_AddObjectToObject(h, ts[i].name), *sh = cJSON_AddArrayToObject(e, "shape"),
              *of = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddStringToObject(e, "dtype", ts[i].dtype == ST_BF16 ? "BF16" : "F32");
        for (int d = 0; d < ts[i].ndim; d++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)ts[i].shape[d]));
            nb *= (size_t)ts[i].shape[d];
        }
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t jlen = strlen(json), pad = (8 - jlen % 8) % 8; /* keep the data 8-byte aligned, as HF does */
    uint64_t hlen = jlen + pad;
    char *path = path_join(dir, name), tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *fp = fopen(tmp, "wb");
    int ok = fp != NULL;
    if (ok) {
        uint8_t le[8];
        for (int i = 0; i < 8; i++) le[i] = (uint8_t)(hlen >> (8 * i));
        ok = fwrite(le, 1, 8, fp) == 8 && fwrite(json, 1, jlen, fp) == jlen && fwrite("        ", 1, pad, fp) == pad;
        for (int i = i0; i < i1 && ok; i++) {
            size_t numel = 1;
            for (int d = 0; d < ts[i].ndim; d++) numel *= (size_t)ts[i].shape[d];
            ok = ts[i].dtype == ST_BF16 ? write_bf16(fp, ts[i].data, numel)
                                        : fwrite(ts[i].data, sizeof(float), numel, fp) == numel;
        }
        ok = (fclose(fp) == 0) && ok;
    }
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) {
        unlink(tmp);
        quorum_input_error(path, "cannot write safetensors file (disk full or folder missing?)");
    }
    free(json);
    free(path);
    return ok ? 0 : -1;
}

int safetensors_write_file(const char *dir, const char *file, const StWrite *ts, int n) {
    return write_file(dir, file, ts, 0, n);
}

int safetensors_write(const char *dir, const StWrite *ts, int n, size_t max_shard_bytes) {
    /* greedy split: a new shard starts when the next tensor would pass the limit */
    int *start = xmalloc(sizeof(int) * (n + 1)), k = 0;
    size_t cur = 0, total = 0;
    for (int i = 0; i < n; i++) {
        size_t nb = ts[i].dtype == ST_BF16 ? 2 : sizeof(float);
        for (int d = 0; d < ts[i].ndim; d++) nb *= (size_t)ts[i].shape[d];
        if (i == 0 || (max_shard_bytes && cur > 0 && cur + nb > max_shard_bytes)) { start[k++] = i; cur = 0; }
        cur += nb;
        total += nb;
    }
    start[k] = n;
    int rc = 0;
    if (k <= 1) {
        rc = write_file(dir, "model.safetensors", ts, 0, n);
    } else {
        cJSON *idx = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(idx, "metadata");
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        cJSON *wm = cJSON_AddObjectToObject(idx, "weight_map");
        for (int s = 0; s < k && !rc; s++) {
            char name[64];
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, k);
            rc = write_file(dir, name, ts, start[s], start[s + 1]);
            for (int i = start[s]; i < start[s + 1]; i++) cJSON_AddStringToObject(wm, ts[i].name, name);
        }
        if (!rc) {
            char *path = path_join(dir, "model.safetensors.index.json");
            rc = json_write_atomic(path, idx);
            free(path);
        }
        cJSON_Delete(idx);
    }
    free(start);
    return rc;
}
