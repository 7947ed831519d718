/* h5.c - checked HDF5 helpers: the one HDF5 layer of every stage's files (see quorum/h5.h). */
#include "quorum/h5.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "quorum/common.h"

hid_t h5q_create_collective(const char *path, hid_t *dxpl) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    h5Check(H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL), "set MPI-IO file access");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    *dxpl = H5Pcreate(H5P_DATASET_XFER);
    h5Check(H5Pset_dxpl_mpio(*dxpl, H5FD_MPIO_COLLECTIVE), "set collective transfer");
    return f;
}

void h5q_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static int where_error(const char *file, const char *name, const char *msg) {
    char where[1536];
    snprintf(where, sizeof where, "%s:/%s", file, name);
    return quorum_input_error(where, "%s", msg);
}

int h5q_attr_write_str(hid_t obj, const char *name, const char *s) {
    size_t n = strlen(s);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n ? n + 1 : 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, t, n ? s : "") >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

int h5q_attr_write_num(hid_t obj, const char *name, hid_t type, const void *value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, type, value) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

/* Opens a scalar attribute; -1 (after a message) when it is missing or not scalar. */
static hid_t attr_open_scalar(hid_t obj, const char *file, const char *name) {
    if (H5Aexists(obj, name) <= 0) { where_error(file, name, "missing attribute"); return -1; }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) { where_error(file, name, "unreadable attribute"); return -1; }
    hid_t sp = H5Aget_space(a);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    if (np != 1) { H5Aclose(a); where_error(file, name, "attribute is not a scalar"); return -1; }
    return a;
}

int h5q_attr_read_num(hid_t obj, const char *file, const char *name, hid_t memtype, void *value) {
    hid_t a = attr_open_scalar(obj, file, name);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(t);
    H5Tclose(t);
    int rc = 0;
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) rc = where_error(file, name, "attribute is not a number");
    else if (H5Aread(a, memtype, value) < 0) rc = where_error(file, name, "attribute read failed");
    H5Aclose(a);
    return rc;
}

int h5q_attr_read_str(hid_t obj, const char *file, const char *name, char *out, size_t cap) {
    hid_t a = attr_open_scalar(obj, file, name);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) > 0) {
        rc = where_error(file, name, "attribute is not a fixed-length string");
    } else {
        size_t n = H5Tget_size(t);
        char *tmp = xcalloc(n + 1, 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n);
        /* NULLPAD: all n bytes are text (h5py writes fixed strings without a NUL); tmp has the NUL */
        H5Tset_strpad(mt, H5T_STR_NULLPAD);
        if (H5Aread(a, mt, tmp) < 0) rc = where_error(file, name, "attribute read failed");
        else if (strlen(tmp) >= cap) rc = where_error(file, name, "string attribute too long");
        else memcpy(out, tmp, strlen(tmp) + 1);
        H5Tclose(mt);
        free(tmp);
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

int h5q_write_slab(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims,
                   hsize_t start, hsize_t count, const void *buf, hid_t dxpl) {
    hid_t fs = H5Screate_simple(rank, dims, NULL);
    /* no object timestamps: identical content gives identical bytes (checksummable outputs) */
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t d = H5Dcreate2(file, name, type, fs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    if (d < 0) { H5Sclose(fs); return -1; }
    hsize_t off[2] = {0, start}, cnt[2] = {dims[0], count};
    if (rank == 1) { off[0] = start; cnt[0] = count; }
    hsize_t elems = rank == 1 ? count : dims[0] * count;
    hid_t ms = H5Screate_simple(1, &elems, NULL);
    if (elems == 0) { H5Sselect_none(fs); H5Sselect_none(ms); }
    else H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL);
    hsize_t total = rank == 1 ? dims[0] : dims[0] * dims[1];
    /* An empty dataset has nothing to write (and every rank agrees, since dims are global). */
    int rc = (total && H5Dwrite(d, type, ms, fs, dxpl, buf) < 0) ? -1 : 0;
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    return rc;
}

int h5q_write_1d(hid_t file, const char *name, hid_t type, int64_t n, const void *buf) {
    hsize_t dims[1] = {(hsize_t)n};
    return h5q_write_slab(file, name, type, 1, dims, 0, dims[0], buf, H5P_DEFAULT);
}

int h5q_dims(hid_t file, const char *fname, const char *name, int rank, hsize_t *dims) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) return where_error(fname, name, "missing dataset");
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return where_error(fname, name, "unreadable dataset");
    hid_t sp = H5Dget_space(d);
    int r = H5Sget_simple_extent_ndims(sp);
    int rc = 0;
    if (r != rank) {
        char msg[128];
        snprintf(msg, sizeof msg, "expected a %d-D dataset, found %d-D", rank, r);
        rc = where_error(fname, name, msg);
    } else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
    }
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

int h5q_read_all(hid_t file, const char *fname, const char *name, hid_t memtype, int rank,
                 const hsize_t *dims, void *buf) {
    hsize_t got[2] = {0, 0};
    if (h5q_dims(file, fname, name, rank, got) != 0) return -1;
    for (int k = 0; k < rank; k++) {
        if (got[k] != dims[k]) {
            char msg[160];
            snprintf(msg, sizeof msg, "dimension %d is %llu, expected %llu", k, (unsigned long long)got[k],
                     (unsigned long long)dims[k]);
            return where_error(fname, name, msg);
        }
    }
    hsize_t total = 1;
    for (int k = 0; k < rank; k++) total *= dims[k];
    if (total == 0) return 0;
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    H5T_class_t cls = H5Tget_class(t);
    H5Tclose(t);
    int rc = 0;
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) rc = where_error(fname, name, "dataset is not numeric");
    else if (H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = where_error(fname, name, "read failed (truncated or corrupt file?)");
    H5Dclose(d);
    return rc;
}
