/* Kernel launches and OpenCL errors for the OpenCL backend: every failure
 * becomes a message on the device naming the call and the error. */
#include "core/opencl/ocl.h"
#include "core/ops.h"

#include <stdio.h>

const char *kc_ocl_error_name(int err) {
    switch (err) {
#define NAME(code)                                                                                 \
    case code:                                                                                     \
        return #code;
        NAME(CL_SUCCESS)
        NAME(CL_DEVICE_NOT_FOUND)
        NAME(CL_DEVICE_NOT_AVAILABLE)
        NAME(CL_COMPILER_NOT_AVAILABLE)
        NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        NAME(CL_OUT_OF_RESOURCES)
        NAME(CL_OUT_OF_HOST_MEMORY)
        NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
        NAME(CL_MEM_COPY_OVERLAP)
        NAME(CL_IMAGE_FORMAT_MISMATCH)
        NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        NAME(CL_BUILD_PROGRAM_FAILURE)
        NAME(CL_MAP_FAILURE)
        NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        NAME(CL_COMPILE_PROGRAM_FAILURE)
        NAME(CL_LINKER_NOT_AVAILABLE)
        NAME(CL_LINK_PROGRAM_FAILURE)
        NAME(CL_DEVICE_PARTITION_FAILED)
        NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        NAME(CL_INVALID_VALUE)
        NAME(CL_INVALID_DEVICE_TYPE)
        NAME(CL_INVALID_PLATFORM)
        NAME(CL_INVALID_DEVICE)
        NAME(CL_INVALID_CONTEXT)
        NAME(CL_INVALID_QUEUE_PROPERTIES)
        NAME(CL_INVALID_COMMAND_QUEUE)
        NAME(CL_INVALID_HOST_PTR)
        NAME(CL_INVALID_MEM_OBJECT)
        NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        NAME(CL_INVALID_IMAGE_SIZE)
        NAME(CL_INVALID_SAMPLER)
        NAME(CL_INVALID_BINARY)
        NAME(CL_INVALID_BUILD_OPTIONS)
        NAME(CL_INVALID_PROGRAM)
        NAME(CL_INVALID_PROGRAM_EXECUTABLE)
        NAME(CL_INVALID_KERNEL_NAME)
        NAME(CL_INVALID_KERNEL_DEFINITION)
        NAME(CL_INVALID_KERNEL)
        NAME(CL_INVALID_ARG_INDEX)
        NAME(CL_INVALID_ARG_VALUE)
        NAME(CL_INVALID_ARG_SIZE)
        NAME(CL_INVALID_KERNEL_ARGS)
        NAME(CL_INVALID_WORK_DIMENSION)
        NAME(CL_INVALID_WORK_GROUP_SIZE)
        NAME(CL_INVALID_WORK_ITEM_SIZE)
        NAME(CL_INVALID_GLOBAL_OFFSET)
        NAME(CL_INVALID_EVENT_WAIT_LIST)
        NAME(CL_INVALID_EVENT)
        NAME(CL_INVALID_OPERATION)
        NAME(CL_INVALID_GL_OBJECT)
        NAME(CL_INVALID_BUFFER_SIZE)
        NAME(CL_INVALID_MIP_LEVEL)
        NAME(CL_INVALID_GLOBAL_WORK_SIZE)
        NAME(CL_INVALID_PROPERTY)
        NAME(CL_INVALID_IMAGE_DESCRIPTOR)
        NAME(CL_INVALID_COMPILER_OPTIONS)
        NAME(CL_INVALID_LINKER_OPTIONS)
        NAME(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef NAME
    /* the ICD loader's own code, and CLBlast's (clblast_c.h) */
    case -1001:
        return "CL_PLATFORM_NOT_FOUND_KHR";
    case -1024:
        return "CLBlastNotImplemented";
    case -1022:
        return "CLBlastInvalidMatrixA";
    case -1021:
        return "CLBlastInvalidMatrixB";
    case -1020:
        return "CLBlastInvalidMatrixC";
    case -1017:
        return "CLBlastInvalidDimension";
    case -1016:
        return "CLBlastInvalidLeadDimA";
    case -1015:
        return "CLBlastInvalidLeadDimB";
    case -1014:
        return "CLBlastInvalidLeadDimC";
    case -1011:
        return "CLBlastInsufficientMemoryA";
    case -1010:
        return "CLBlastInsufficientMemoryB";
    case -1009:
        return "CLBlastInsufficientMemoryC";
    case -2050:
        return "CLBlastInsufficientMemoryTemp";
    case -2049:
        return "CLBlastInvalidBatchCount";
    case -2046:
        return "CLBlastInvalidLocalMemUsage";
    case -2041:
        return "CLBlastDatabaseError";
    case -2040:
        return "CLBlastUnknownError";
    case -2039:
        return "CLBlastUnexpectedError";
    default:
        return "unknown error";
    }
}

int kc_ocl_fail(kc_device *d, const char *what, int err) {
    return kc_device_fail(d, KC_ERUNTIME, "opencl: %s failed: %s (%d)", what,
                          kc_ocl_error_name(err), err);
}

int kc_ocl_elem_off(kc_device *d, kc_buf b, size_t *out) {
    if (b.off % 4)
        return kc_device_fail(d, KC_ERUNTIME,
                              "opencl: buffer offset %zu is not a multiple of 4 bytes", b.off);
    *out = b.off / 4;
    return KC_OK;
}

int kc_ocl_reserve(kc_device *d, cl_mem *m, size_t *have, size_t bytes, const char *what) {
    if (*m && *have >= bytes) return KC_OK;
    if (*m) clReleaseMemObject(*m);
    *m = NULL;
    *have = 0;
    cl_int err;
    cl_mem fresh =
        clCreateBuffer(kc_ocl_of(d)->ctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err != CL_SUCCESS) return kc_ocl_fail(d, what, err);
    *m = fresh;
    *have = bytes;
    return KC_OK;
}

kc_ocl_call kc_ocl_begin(kc_device *d, int kernel) {
    kc_ocl_call c = {.d = d, .kernel = kernel};
    return c;
}

void kc_ocl_raw(kc_ocl_call *c, size_t size, const void *v) {
    if (c->err != CL_SUCCESS) return;
    c->err = clSetKernelArg(kc_ocl_of(c->d)->kernel[c->kernel], c->arg++, size, v);
}

void kc_ocl_clmem(kc_ocl_call *c, cl_mem m) {
    kc_ocl_raw(c, sizeof m, &m);
}

void kc_ocl_buf_elem(kc_ocl_call *c, kc_buf b, size_t elem) {
    cl_mem m = kc_buf_ok(b) ? kc_ocl_mem(b) : kc_ocl_of(c->d)->dummy;
    if (b.off % elem && !c->misaligned) c->misaligned = b.off, c->elem = elem;
    kc_ocl_clmem(c, m);
    kc_ocl_u64(c, kc_buf_ok(b) ? (uint64_t)(b.off / elem) : 0);
}

void kc_ocl_buf(kc_ocl_call *c, kc_buf b) {
    kc_ocl_buf_elem(c, b, 4);
}

void kc_ocl_f32(kc_ocl_call *c, float v) {
    cl_float x = v;
    kc_ocl_raw(c, sizeof x, &x);
}

void kc_ocl_i32(kc_ocl_call *c, int v) {
    cl_int x = v;
    kc_ocl_raw(c, sizeof x, &x);
}

void kc_ocl_u64(kc_ocl_call *c, uint64_t v) {
    cl_ulong x = v;
    kc_ocl_raw(c, sizeof x, &x);
}

void kc_ocl_local(kc_ocl_call *c, size_t bytes) {
    kc_ocl_raw(c, bytes, NULL);
}

static const char *const kernel_names[KC_OCL_K_COUNT] = {
#define KC_OCL_NAME(name) "k_" #name,
    KC_OCL_KERNELS(KC_OCL_NAME)
#undef KC_OCL_NAME
};

static int checked_args(kc_ocl_call *c) {
    char what[96];
    if (c->misaligned)
        return kc_device_fail(c->d, KC_ERUNTIME,
                              "opencl: %s: buffer offset %zu is not a multiple of %zu bytes",
                              kernel_names[c->kernel], c->misaligned, c->elem);
    if (c->err == CL_SUCCESS) return KC_OK;
    snprintf(what, sizeof what, "clSetKernelArg(%s, %u)", kernel_names[c->kernel], c->arg - 1);
    return kc_ocl_fail(c->d, what, c->err);
}

int kc_ocl_run_groups(kc_ocl_call *c, size_t groups, size_t local) {
    int rc = checked_args(c);
    if (rc || !groups) return rc;
    kc_ocl *o = kc_ocl_of(c->d);
    size_t global = groups * local;
    cl_int err = clEnqueueNDRangeKernel(o->queue, o->kernel[c->kernel], 1, NULL, &global, &local, 0,
                                        NULL, NULL);
    if (err == CL_SUCCESS) return KC_OK;
    char what[96];
    snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", kernel_names[c->kernel]);
    return kc_ocl_fail(c->d, what, err);
}

int kc_ocl_run(kc_ocl_call *c, size_t n) {
    kc_ocl *o = kc_ocl_of(c->d);
    size_t local = o->local[c->kernel];
    size_t groups = (n + local - 1) / local;
    if (groups > o->max_groups) groups = o->max_groups;
    return kc_ocl_run_groups(c, groups, local);
}

const char *kc_ocl_kernel_name(int kernel) {
    return kernel_names[kernel];
}
