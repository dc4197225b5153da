/* OpenCL C source of the embedding lookup (core/backend.h). Forward: one
 * work-item per output element. Backward: one work-item per (bucket, block of
 * columns) owns the rows r with r % buckets == bucket in those columns and
 * walks every id in order, so each element of dw is summed in increasing position by one
 * work-item: the reference's bits, and rows no id names stay untouched. */
#include "core/opencl/ocl.h"

#define KC_CL(...) #__VA_ARGS__ "\n"

const char kc_ocl_src_embed[] = KC_CL(

    /* the row of a whole number in [0, rows), else -1 */
    long emb_row(float v, uint rows) {
        if (!(v >= 0.0f) || floor(v) != v || v >= 4294967296.0f) return -1;
        uint r = (uint)v;
        return r < rows ? (long)r : -1;
    }

    __kernel void k_emb_forward(__global const float *ids, ulong io, __global const float *w,
                                ulong wo, __global float *y, ulong yo, uint rows, uint dim,
                                ulong total) {
        ids += io;
        w += wo;
        y += yo;
        FOR_EACH(t, total) {
            ulong i = t / dim, j = t % dim;
            long r = emb_row(ids[i], rows);
            y[t] = r < 0 ? 0.0f : w[(ulong)r * dim + j];
        }
    }

    __kernel void k_emb_backward(__global const float *ids, ulong io, __global const float *dy,
                                 ulong dyo, __global float *dw, ulong dwo, uint n, uint rows,
                                 uint dim, uint buckets, uint block, ulong total) {
        ids += io;
        dy += dyo;
        dw += dwo;
        uint blocks = (dim + block - 1) / block;
        FOR_EACH(t, total) {
            uint bucket = (uint)(t / blocks), j0 = (uint)(t % blocks) * block;
            uint j1 = min(j0 + block, dim);
            for (uint i = 0; i < n; i++) {
                long r = emb_row(ids[i], rows);
                if (r < 0 || (uint)r % buckets != bucket) continue;
                for (uint j = j0; j < j1; j++)
                    dw[(ulong)r * dim + j] += dy[(ulong)i * dim + j];
            }
        }
    }

);
