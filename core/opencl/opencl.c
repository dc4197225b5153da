/* The OpenCL backend: device selection, the context with its one in-order
 * queue, the program built once per device, memory, and the op table.
 *
 * Devices are numbered across platforms in the order the ICD loader lists
 * them (platform 0's devices, then platform 1's, ...). The program is built
 * without relaxed-math options: results are IEEE float32, with division and
 * sqrt correctly rounded where the device supports it. Setting
 * KERASC_OPENCL_FP64=0 builds the float-only variant even on devices with
 * doubles, so that path can be tested anywhere. */
#include "core/opencl/ocl.h"
#include "core/ops.h"

#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEVICES 64
#define MAX_PLATFORMS 16

typedef struct ocl_device_ref {
    cl_platform_id platform;
    cl_device_id device;
} ocl_device_ref;

static const char no_platform[] =
    "no OpenCL platform found: install an OpenCL driver (e.g. pocl-opencl-icd)";

/* Every device of every platform, in order; negative (reason in why) when
 * there is none. */
static int enumerate(ocl_device_ref *out, int cap, char *why, size_t why_n) {
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(MAX_PLATFORMS, plats, &np);
    if (err != CL_SUCCESS || np == 0) {
        snprintf(why, why_n, "%s", no_platform);
        return -1;
    }
    int count = 0;
    for (cl_uint p = 0; p < np && p < MAX_PLATFORMS; p++) {
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) != CL_SUCCESS)
            continue;
        for (cl_uint i = 0; i < nd && i < MAX_DEVICES && count < cap; i++)
            out[count++] = (ocl_device_ref){plats[p], devs[i]};
    }
    if (count == 0) {
        snprintf(why, why_n, "OpenCL platforms are installed but report no device");
        return -1;
    }
    return count;
}

static void info_string(cl_device_id dev, cl_device_info what, char *buf, size_t n) {
    buf[0] = 0;
    if (clGetDeviceInfo(dev, what, n, buf, NULL) != CL_SUCCESS) snprintf(buf, n, "?");
    buf[n - 1] = 0;
}

static const char *type_name(cl_device_type t) {
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    return "other";
}

static int ocl_list_devices(char *buf, size_t n) {
    ocl_device_ref devs[MAX_DEVICES];
    char why[160];
    int count = enumerate(devs, MAX_DEVICES, why, sizeof why);
    if (n) buf[0] = 0;
    if (count < 0) {
        if (n) snprintf(buf, n, "%s", why);
        return -1;
    }
    size_t used = 0;
    for (int i = 0; i < count && used < n; i++) {
        char pname[128], dname[128];
        cl_device_type type = 0;
        cl_ulong mem = 0;
        pname[0] = 0;
        if (clGetPlatformInfo(devs[i].platform, CL_PLATFORM_NAME, sizeof pname, pname, NULL))
            snprintf(pname, sizeof pname, "?");
        pname[sizeof pname - 1] = 0;
        info_string(devs[i].device, CL_DEVICE_NAME, dname, sizeof dname);
        clGetDeviceInfo(devs[i].device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
        clGetDeviceInfo(devs[i].device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
        int w = snprintf(buf + used, n - used, "%d: %s / %s (%s, %llu MiB)\n", i, pname, dname,
                         type_name(type), (unsigned long long)(mem >> 20));
        if (w < 0) break;
        used += (size_t)w;
    }
    return count;
}

/* ------------------------------------------------------------ program --- */

/* The enum values of core/backend.h, as the kernels' UN_* / BIN_* / ... */
static const struct {
    const char *name;
    int value;
} constants[] = {
    {"UN_NEG", KC_UN_NEG},
    {"UN_ABS", KC_UN_ABS},
    {"UN_SIGN", KC_UN_SIGN},
    {"UN_SQUARE", KC_UN_SQUARE},
    {"UN_SQRT", KC_UN_SQRT},
    {"UN_RSQRT", KC_UN_RSQRT},
    {"UN_RECIP", KC_UN_RECIP},
    {"UN_EXP", KC_UN_EXP},
    {"UN_LOG", KC_UN_LOG},
    {"UN_LOG1P", KC_UN_LOG1P},
    {"UN_TANH", KC_UN_TANH},
    {"UN_SIGMOID", KC_UN_SIGMOID},
    {"UN_FLOOR", KC_UN_FLOOR},
    {"UN_ADD", KC_UN_ADD},
    {"UN_MUL", KC_UN_MUL},
    {"UN_DIV", KC_UN_DIV},
    {"UN_RSUB", KC_UN_RSUB},
    {"UN_POW", KC_UN_POW},
    {"UN_MAX", KC_UN_MAX},
    {"UN_MIN", KC_UN_MIN},
    {"UN_GT", KC_UN_GT},
    {"UN_GE", KC_UN_GE},
    {"UN_LT", KC_UN_LT},
    {"UN_LE", KC_UN_LE},
    {"UN_EQ", KC_UN_EQ},
    {"BIN_ADD", KC_BIN_ADD},
    {"BIN_SUB", KC_BIN_SUB},
    {"BIN_MUL", KC_BIN_MUL},
    {"BIN_DIV", KC_BIN_DIV},
    {"BIN_MAX", KC_BIN_MAX},
    {"BIN_MIN", KC_BIN_MIN},
    {"BIN_POW", KC_BIN_POW},
    {"BIN_GT", KC_BIN_GT},
    {"BIN_GE", KC_BIN_GE},
    {"BIN_LT", KC_BIN_LT},
    {"BIN_LE", KC_BIN_LE},
    {"BIN_EQ", KC_BIN_EQ},
    {"BIN_NE", KC_BIN_NE},
    {"COPY_SET", KC_COPY_SET},
    {"COPY_ADD", KC_COPY_ADD},
    {"RED_SUM", KC_RED_SUM},
    {"RED_MEAN", KC_RED_MEAN},
    {"RED_MAX", KC_RED_MAX},
    {"RED_MIN", KC_RED_MIN},
    {"RED_SUMSQ", KC_RED_SUMSQ},
    {"RED_SUMABS", KC_RED_SUMABS},
    {"RED_ARGMAX", KC_RED_ARGMAX},
    {"ACT_LINEAR", KC_ACT_LINEAR},
    {"ACT_RELU", KC_ACT_RELU},
    {"ACT_SIGMOID", KC_ACT_SIGMOID},
    {"ACT_TANH", KC_ACT_TANH},
    {"ACT_SOFTMAX", KC_ACT_SOFTMAX},
    {"ACT_ELU", KC_ACT_ELU},
    {"ACT_SELU", KC_ACT_SELU},
    {"ACT_SOFTPLUS", KC_ACT_SOFTPLUS},
    {"ACT_SOFTSIGN", KC_ACT_SOFTSIGN},
    {"ACT_SWISH", KC_ACT_SWISH},
    {"ACT_GELU", KC_ACT_GELU},
    {"ACT_LEAKY_RELU", KC_ACT_LEAKY_RELU},
    {"ACT_HARD_SIGMOID", KC_ACT_HARD_SIGMOID},
    {"ACT_EXPONENTIAL", KC_ACT_EXPONENTIAL},
    {"ACT_RELU6", KC_ACT_RELU6},
    {"ACT_HARD_SILU", KC_ACT_HARD_SILU},
    {"ACT_MISH", KC_ACT_MISH},
};

#define NCONST (sizeof constants / sizeof constants[0])

static void write_constants(char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < NCONST && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "#define %s %d\n", constants[i].name,
                                 constants[i].value);
}

static int device_has(cl_device_id dev, const char *ext) {
    size_t len = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &len) != CL_SUCCESS || !len) return 0;
    char *s = malloc(len + 1);
    if (!s) return 0;
    int found = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, len, s, NULL) == CL_SUCCESS) {
        s[len] = 0;
        found = strstr(s, ext) != NULL;
    }
    free(s);
    return found;
}

static int want_fp64(cl_device_id dev) {
    const char *env = getenv("KERASC_OPENCL_FP64");
    if (env && !strcmp(env, "0")) return 0;
    cl_device_fp_config cfg = 0;
    clGetDeviceInfo(dev, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof cfg, &cfg, NULL);
    return cfg != 0 && device_has(dev, "cl_khr_fp64");
}

static int build_failed(kc_device *d, cl_int err) {
    kc_ocl *o = kc_ocl_of(d);
    char log[1400];
    size_t len = 0;
    log[0] = 0;
    clGetProgramBuildInfo(o->program, o->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, &len);
    log[sizeof log - 1] = 0;
    return kc_device_fail(d, KC_ERUNTIME, "opencl: building the kernels failed: %s (%d)%s%s",
                          kc_ocl_error_name(err), err, log[0] ? ": " : "", log);
}

static int build_program(kc_device *d) {
    kc_ocl *o = kc_ocl_of(d);
    char defs[4096];
    write_constants(defs, sizeof defs);
    const char *parts[7] = {defs,           kc_ocl_src_prelude, kc_ocl_src_math,
                            kc_ocl_src_nn,  kc_ocl_src_optim,   kc_ocl_src_embed,
                            kc_ocl_src_fp64};
    cl_uint nparts = o->fp64 ? 7 : 6;
    cl_int err;
    o->program = clCreateProgramWithSource(o->ctx, nparts, parts, NULL, &err);
    if (err != CL_SUCCESS) return kc_ocl_fail(d, "clCreateProgramWithSource", err);
    char opts[160];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2%s%s", o->fp64 ? " -DKC_FP64" : "",
             o->exact_div_sqrt ? " -cl-fp32-correctly-rounded-divide-sqrt" : "");
    err = clBuildProgram(o->program, 1, &o->device, opts, NULL, NULL);
    return err == CL_SUCCESS ? KC_OK : build_failed(d, err);
}

static size_t pow2_floor(size_t v) {
    size_t p = 1;
    while (p * 2 <= v)
        p *= 2;
    return p;
}

static int create_kernels(kc_device *d) {
    kc_ocl *o = kc_ocl_of(d);
    for (int k = 0; k < KC_OCL_K_COUNT; k++) {
        if (k == KC_OCL_K_penalty_finish && !o->fp64) continue;
        cl_int err;
        o->kernel[k] = clCreateKernel(o->program, kc_ocl_kernel_name(k), &err);
        char what[80];
        snprintf(what, sizeof what, "clCreateKernel(%s)", kc_ocl_kernel_name(k));
        if (err != CL_SUCCESS) return kc_ocl_fail(d, what, err);
        size_t wg = 1;
        err = clGetKernelWorkGroupInfo(o->kernel[k], o->device, CL_KERNEL_WORK_GROUP_SIZE,
                                       sizeof wg, &wg, NULL);
        if (err != CL_SUCCESS) return kc_ocl_fail(d, "clGetKernelWorkGroupInfo", err);
        o->local[k] = pow2_floor(wg < KC_OCL_LOCAL_MAX ? wg : KC_OCL_LOCAL_MAX);
    }
    return KC_OK;
}

/* ----------------------------------------------------------- lifetime --- */

static int open_count; /* devices open in this process (CLBlast's cache is global) */

static void release(kc_ocl *o) {
    if (o->queue) clFinish(o->queue);
    cl_mem mems[] = {o->dummy, o->partial, o->gemm_tmp, o->copy_tmp, o->conv_tmp};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    for (int k = 0; k < KC_OCL_K_COUNT; k++)
        if (o->kernel[k]) clReleaseKernel(o->kernel[k]);
    if (o->program) clReleaseProgram(o->program);
    if (o->queue) clReleaseCommandQueue(o->queue);
    if (o->ctx) clReleaseContext(o->ctx);
    if (o->sub_device) clReleaseDevice(o->device);
    free(o);
}

static void query_device(kc_ocl *o) {
    cl_device_fp_config single = 0;
    clGetDeviceInfo(o->device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof single, &single, NULL);
    clGetDeviceInfo(o->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof o->max_alloc, &o->max_alloc,
                    NULL);
    o->exact_div_sqrt = (single & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    o->fp64 = want_fp64(o->device);
    o->max_groups = 65536;
}

/* On a CPU device (PoCL) a thread budget becomes a sub-device of that many
 * compute units; GPUs have no use for it. A device that cannot be
 * partitioned runs whole. */
static void limit_threads(kc_ocl *o, int threads) {
    cl_device_type type = 0;
    cl_uint units = 0, made = 0;
    clGetDeviceInfo(o->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(o->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    if (threads <= 0 || !(type & CL_DEVICE_TYPE_CPU) || (cl_uint)threads >= units) return;
    cl_device_partition_property props[] = {CL_DEVICE_PARTITION_BY_COUNTS,
                                            (cl_device_partition_property)threads,
                                            CL_DEVICE_PARTITION_BY_COUNTS_LIST_END, 0};
    cl_device_id sub;
    if (clCreateSubDevices(o->device, props, 1, &sub, &made) != CL_SUCCESS || made != 1) return;
    o->device = sub;
    o->sub_device = 1;
}

static int create_context(kc_device *d) {
    kc_ocl *o = kc_ocl_of(d);
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)o->platform, 0};
    cl_int err;
    o->ctx = clCreateContext(props, 1, &o->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) return kc_ocl_fail(d, "clCreateContext", err);
    o->queue = clCreateCommandQueue(o->ctx, o->device, 0, &err);
    if (err != CL_SUCCESS) return kc_ocl_fail(d, "clCreateCommandQueue", err);
    return KC_OK;
}

static int create_buffers(kc_device *d) {
    kc_ocl *o = kc_ocl_of(d);
    size_t dummy = 0, partial = 0;
    int rc = kc_ocl_reserve(d, &o->dummy, &dummy, 16, "clCreateBuffer");
    if (!rc)
        rc = kc_ocl_reserve(d, &o->partial, &partial, 2 * KC_PENALTY_BLOCKS * sizeof(double),
                            "clCreateBuffer");
    return rc;
}

static int ocl_open(kc_device *d, const kc_device_opts *opts) {
    ocl_device_ref devs[MAX_DEVICES];
    char why[160];
    int count = enumerate(devs, MAX_DEVICES, why, sizeof why);
    if (count < 0) return kc_device_fail(d, KC_ECONFIG, "%s", why);
    int index = opts ? opts->device : 0;
    if (index < 0 || index >= count)
        return kc_device_fail(d, KC_ECONFIG,
                              "opencl: no device %d: %d device%s found (see --list-devices)", index,
                              count, count == 1 ? "" : "s");
    kc_ocl *o = calloc(1, sizeof *o);
    if (!o) return kc_device_fail(d, KC_ERUNTIME, "opencl: out of host memory");
    o->platform = devs[index].platform;
    o->device = devs[index].device;
    d->impl = o;
    limit_threads(o, opts ? opts->threads : 0);
    query_device(o);
    d->float_math = !o->fp64;
    int rc = create_context(d);
    if (!rc) rc = build_program(d);
    if (!rc) rc = create_kernels(d);
    if (!rc) rc = create_buffers(d);
    if (rc) {
        release(o);
        d->impl = NULL;
        return rc;
    }
    char dname[128];
    info_string(o->device, CL_DEVICE_NAME, dname, sizeof dname);
    snprintf(d->name, sizeof d->name, "opencl:%d (%s)", index, dname);
    open_count++;
    return KC_OK;
}

static void ocl_close(kc_device *d) {
    if (!d->impl) return;
    release(kc_ocl_of(d));
    d->impl = NULL;
    /* CLBlast keeps compiled programs, which hold their context, until told */
    if (--open_count == 0) CLBlastClearCache();
}

static int ocl_synchronize(kc_device *d) {
    cl_int err = clFinish(kc_ocl_of(d)->queue);
    return err == CL_SUCCESS ? KC_OK : kc_ocl_fail(d, "clFinish", err);
}

/* ------------------------------------------------------------- memory --- */

static int ocl_alloc(kc_device *d, size_t bytes, kc_buf *out) {
    kc_ocl *o = kc_ocl_of(d);
    *out = KC_BUF_NULL;
    size_t size = bytes ? bytes : 4;
    if (size > o->max_alloc)
        return kc_device_fail(d, KC_ERUNTIME,
                              "opencl: %zu bytes exceed the device's largest allocation (%llu)",
                              bytes, (unsigned long long)o->max_alloc);
    cl_int err;
    cl_mem m = clCreateBuffer(o->ctx, CL_MEM_READ_WRITE, size, NULL, &err);
    if (err != CL_SUCCESS) return kc_ocl_fail(d, "clCreateBuffer", err);
    const cl_uchar zero = 0;
    err = clEnqueueFillBuffer(o->queue, m, &zero, 1, 0, size, 0, NULL, NULL);
    /* drivers allocate lazily: waiting here reports a failed allocation now,
     * while the caller can still handle it, instead of at some later op */
    if (err == CL_SUCCESS) err = clFinish(o->queue);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(m);
        return kc_ocl_fail(d, "allocating device memory", err);
    }
    out->mem = (kc_mem *)(void *)m;
    return KC_OK;
}

static void ocl_free(kc_device *d, kc_buf b) {
    (void)d;
    if (kc_buf_ok(b)) clReleaseMemObject(kc_ocl_mem(b));
}

static int ocl_upload(kc_device *d, kc_buf dst, const void *src, size_t bytes, int mode) {
    if (!bytes) return KC_OK; /* OpenCL rejects empty transfers */
    cl_int err = clEnqueueWriteBuffer(kc_ocl_of(d)->queue, kc_ocl_mem(dst),
                                      mode == KC_ASYNC ? CL_FALSE : CL_TRUE, dst.off, bytes, src, 0,
                                      NULL, NULL);
    return err == CL_SUCCESS ? KC_OK : kc_ocl_fail(d, "clEnqueueWriteBuffer", err);
}

static int ocl_download(kc_device *d, void *dst, kc_buf src, size_t bytes, int mode) {
    if (!bytes) return KC_OK;
    cl_int err = clEnqueueReadBuffer(kc_ocl_of(d)->queue, kc_ocl_mem(src),
                                     mode == KC_ASYNC ? CL_FALSE : CL_TRUE, src.off, bytes, dst, 0,
                                     NULL, NULL);
    return err == CL_SUCCESS ? KC_OK : kc_ocl_fail(d, "clEnqueueReadBuffer", err);
}

static int copy_bytes(kc_device *d, cl_mem dst, size_t doff, cl_mem src, size_t soff,
                      size_t bytes) {
    cl_int err =
        clEnqueueCopyBuffer(kc_ocl_of(d)->queue, src, dst, soff, doff, bytes, 0, NULL, NULL);
    return err == CL_SUCCESS ? KC_OK : kc_ocl_fail(d, "clEnqueueCopyBuffer", err);
}

static int overlap(kc_buf a, size_t an, kc_buf b, size_t bn) {
    return a.mem == b.mem && a.off < b.off + bn && b.off < a.off + an;
}

/* OpenCL refuses overlapping copies within one buffer: those go through a
 * staging buffer kept for the purpose. */
static int ocl_copy(kc_device *d, kc_buf dst, kc_buf src, size_t bytes) {
    if (!bytes || kc_buf_eq(dst, src)) return KC_OK;
    if (!overlap(dst, bytes, src, bytes))
        return copy_bytes(d, kc_ocl_mem(dst), dst.off, kc_ocl_mem(src), src.off, bytes);
    kc_ocl *o = kc_ocl_of(d);
    int rc = kc_ocl_reserve(d, &o->copy_tmp, &o->copy_tmp_bytes, bytes, "clCreateBuffer");
    if (!rc) rc = copy_bytes(d, o->copy_tmp, 0, kc_ocl_mem(src), src.off, bytes);
    if (!rc) rc = copy_bytes(d, kc_ocl_mem(dst), dst.off, o->copy_tmp, 0, bytes);
    return rc;
}

static int ocl_copy2d(kc_device *d, kc_buf dst, size_t ldd, kc_buf src, size_t lds, size_t rows,
                      size_t cols) {
    if (!rows || !cols) return KC_OK;
    size_t dn = ((rows - 1) * ldd + cols) * 4, sn = ((rows - 1) * lds + cols) * 4;
    if (!overlap(dst, dn, src, sn)) return kc_ocl_copy2d(d, dst, ldd, src, lds, rows, cols);
    kc_ocl *o = kc_ocl_of(d);
    int rc = kc_ocl_reserve(d, &o->copy_tmp, &o->copy_tmp_bytes, rows * cols * 4, "clCreateBuffer");
    kc_buf tmp = {(kc_mem *)(void *)o->copy_tmp, 0};
    if (!rc) rc = kc_ocl_copy2d(d, tmp, cols, src, lds, rows, cols);
    if (!rc) rc = kc_ocl_copy2d(d, dst, ldd, tmp, cols, rows, cols);
    return rc;
}

/* -------------------------------------------------------------- table --- */

const kc_backend kc_opencl_backend = {
    .name = "opencl",
    .description = "OpenCL 1.2 devices (GPUs, or CPUs through PoCL), gemm by CLBlast",
    .open = ocl_open,
    .close = ocl_close,
    .list_devices = ocl_list_devices,
    .synchronize = ocl_synchronize,
    .alloc = ocl_alloc,
    .free = ocl_free,
    .upload = ocl_upload,
    .download = ocl_download,
    .copy = ocl_copy,
    .copy2d = ocl_copy2d,
    .copy_strided = kc_ocl_copy_strided,
    .fill = kc_ocl_fill,
    .scale = kc_ocl_scale,
    .axpy = kc_ocl_axpy,
    .unary = kc_ocl_unary,
    .binary = kc_ocl_binary,
    .select = kc_ocl_select,
    .reduce = kc_ocl_reduce,
    .gemm = kc_ocl_gemm,
    .act_forward = kc_ocl_act_forward,
    .act_backward = kc_ocl_act_backward,
    .dropout_forward = kc_ocl_dropout_forward,
    .l1l2_penalty = kc_ocl_l1l2_penalty,
    .sum_squares = kc_ocl_sum_squares,
    .mul = kc_ocl_mul,
    .bias_add = kc_ocl_bias_add,
    .bias_grad = kc_ocl_bias_grad,
    .gemm_batched = kc_ocl_gemm_batched,
    .softmax_forward = kc_ocl_softmax_forward,
    .softmax_backward = kc_ocl_softmax_backward,
    .conv2d_workspace = kc_ocl_conv2d_workspace,
    .conv2d_forward = kc_ocl_conv2d_forward,
    .conv2d_backward_data = kc_ocl_conv2d_backward_data,
    .conv2d_backward_filter = kc_ocl_conv2d_backward_filter,
    .maxpool2d_forward = kc_ocl_maxpool2d_forward,
    .maxpool2d_backward = kc_ocl_maxpool2d_backward,
    .avgpool2d_forward = kc_ocl_avgpool2d_forward,
    .avgpool2d_backward = kc_ocl_avgpool2d_backward,
    .norm_rescale = kc_ocl_norm_rescale,
    .scale_div = kc_ocl_scale_div,
    .clip = kc_ocl_clip,
    .weight_decay = kc_ocl_weight_decay,
    .sgd_update = kc_ocl_sgd_update,
    .rmsprop_update = kc_ocl_rmsprop_update,
    .adam_update = kc_ocl_adam_update,
    .adagrad_update = kc_ocl_adagrad_update,
    .adadelta_update = kc_ocl_adadelta_update,
    .adamax_update = kc_ocl_adamax_update,
    .nadam_update = kc_ocl_nadam_update,
    .lion_update = kc_ocl_lion_update,
    .rng_normal = kc_ocl_rng_normal,
    .depthwise_conv2d_forward = kc_ocl_depthwise_forward,
    .depthwise_conv2d_backward_data = kc_ocl_depthwise_backward_data,
    .depthwise_conv2d_backward_filter = kc_ocl_depthwise_backward_filter,
    .embedding_forward = kc_ocl_embedding_forward,
    .embedding_backward = kc_ocl_embedding_backward,
};
