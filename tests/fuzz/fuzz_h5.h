/* Shared by the HDF5 targets (rotset, results, wstore). After each input no HDF5 object (file, group,
 * dataset, attribute, type, space) may be left open: rotbench closes every id on every path, so an id
 * left open is rotbench's leak and aborts with a message. Memory that HDF5 itself leaks on corrupt
 * files is not rotbench's: these targets run with -detect_leaks=0 (run_fuzz.sh, fuzz.sh). */
#ifndef FUZZ_H5_H
#define FUZZ_H5_H

#include <hdf5.h>

#include "fuzz_util.h"

static void fz_h5_check_closed(const char *what) {
    ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n > 0) {
        fprintf(stderr, "%s left %zd HDF5 object(s) open (files %zd, groups %zd, datasets %zd, attrs %zd, types %zd)\n",
                what, n, H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_FILE),
                H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_GROUP),
                H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_DATASET),
                H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ATTR),
                H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_DATATYPE));
        abort();
    }
}

#endif
