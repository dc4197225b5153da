/* Datasets downloaded on first use, from a small HTTP server on 127.0.0.1
 * that this suite starts (never the internet): a good transfer checked and
 * put in place, and a 404, a truncated body and a hash mismatch refused with
 * nothing left behind; offline mode; the binary's --offline. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "clitest.h"
#include "models/data/download.h"
#include "models/data/keras_datasets.h"

#define FIX "/tests/fixtures/data"

static char serve_dir[4200], fix_dir[4200];
static char imdb_sha[65], mnist_sha[65];
static int port;
static pid_t server;

/* ---- the server: GET /MODE/NAME, MODE ok | trunc | 404 ---- */

static void send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w <= 0) return;
        c += w;
        n -= (size_t)w;
    }
}

static void answer(int fd) {
    char req[2048] = "";
    size_t got = 0;
    while (got < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
        ssize_t r = read(fd, req + got, sizeof req - 1 - got);
        if (r <= 0) return;
        got += (size_t)r;
        req[got] = 0;
    }
    char mode[16] = "", name[512] = "";
    if (sscanf(req, "GET /%15[^/]/%511s", mode, name) != 2 || strstr(name, "..") ||
        !strcmp(mode, "404")) {
        const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        send_all(fd, nf, strlen(nf));
        return;
    }
    char path[4800];
    snprintf(path, sizeof path, "%s/%s", serve_dir, name);
    FILE *f = fopen(path, "rb");
    static char body[1 << 22];
    size_t n = f ? fread(body, 1, sizeof body, f) : 0;
    if (f) fclose(f);
    char head[256];
    snprintf(head, sizeof head,
             "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", n);
    send_all(fd, head, strlen(head));
    send_all(fd, body, strcmp(mode, "trunc") ? n : n / 2);
}

static void start_server(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(s, 8), 0);
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    server = fork();
    ck_assert_int_ge(server, 0);
    if (server == 0) {
        alarm(120); /* never outlives a stuck suite */
        for (;;) {
            int c = accept(s, NULL, NULL);
            if (c < 0) continue;
            answer(c);
            close(c);
        }
    }
    close(s);
}

static void stop_server(void) {
    if (server > 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
    }
}

/* ---- fixtures ---- */

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    ck_assert_msg(in && out, "%s -> %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

static void serve(const char *fixture, const char *name) {
    char from[4400], to[4800];
    snprintf(from, sizeof from, "%s/%s", fix_dir, fixture);
    snprintf(to, sizeof to, "%s/%s", serve_dir, name);
    copy_file(from, to);
}

/* A fresh, empty $KERAS_HOME; its datasets folder into ds. */
static void fresh_home(const char *tag, char *ds, size_t n) {
    char kh[4300];
    snprintf(kh, sizeof kh, "%s/home-%s", dir, tag);
    ck_assert_int_eq(mkdir(kh, 0700), 0);
    setenv("KERAS_HOME", kh, 1);
    snprintf(ds, n, "%s/datasets", kh);
}

static void use_mode(const char *mode) {
    char base[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/%s", port, mode);
    setenv("KERASC_DOWNLOAD_URL_BASE", base, 1);
}

/* Hashes of the served files, as KERASC_DOWNLOAD_HASHES wants them. */
static void set_hashes(const char *imdb_hash) {
    char hb[64 + 1], hw[32 + 1], list[600], p[4800];
    kc_error e = {0};
    snprintf(p, sizeof p, "%s/boston_housing.npz", serve_dir);
    ck_assert_int_eq(kc_download_hash_file(p, 64, hb, &e), KC_OK);
    snprintf(p, sizeof p, "%s/imdb_word_index.json", serve_dir);
    ck_assert_int_eq(kc_download_hash_file(p, 32, hw, &e), KC_OK);
    snprintf(list, sizeof list,
             "imdb.npz=%s boston_housing.npz=%s,imdb_word_index.json=%s mnist.npz=%s", imdb_hash,
             hb, hw, mnist_sha);
    setenv("KERASC_DOWNLOAD_HASHES", list, 1);
}

/* ---- a tiny mnist.npz: a stored zip of four uint8 .npy members ---- */

static void put_le(FILE *f, uint32_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        fputc((int)(v >> (8 * i)) & 0xff, f);
}

/* The .npy bytes of a uint8 array of shape (n[, 2, 2]) into buf; its length. */
static size_t npy_u8(unsigned char *buf, int rank, int n, unsigned char fill) {
    char h[128];
    int len = snprintf(h, sizeof h, "{'descr': '|u1', 'fortran_order': False, 'shape': (%d%s), }",
                       n, rank == 3 ? ", 2, 2" : ",");
    while ((len + 11) % 64)
        h[len++] = ' ';
    h[len++] = '\n';
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)len;
    buf[9] = 0;
    memcpy(buf + 10, h, (size_t)len);
    size_t body = (size_t)n * (rank == 3 ? 4 : 1);
    for (size_t i = 0; i < body; i++)
        buf[10 + len + i] = (unsigned char)(fill + i % 3);
    return 10 + (size_t)len + body;
}

static void write_mnist_npz(const char *path) {
    static const char *const names[4] = {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"};
    unsigned char member[4][256];
    size_t size[4];
    uint32_t crc[4], off[4];
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 4; i++) {
        size[i] = npy_u8(member[i], i % 2 ? 1 : 3, i < 2 ? 3 : 2, (unsigned char)(i % 2 ? 1 : 7));
        crc[i] = (uint32_t)crc32(0, member[i], (uInt)size[i]);
        off[i] = (uint32_t)ftell(f);
        put_le(f, 0x04034b50, 4);
        put_le(f, 20, 2), put_le(f, 0, 2), put_le(f, 0, 2), put_le(f, 0, 4);
        put_le(f, crc[i], 4), put_le(f, (uint32_t)size[i], 4), put_le(f, (uint32_t)size[i], 4);
        put_le(f, (uint32_t)strlen(names[i]), 2), put_le(f, 0, 2);
        fputs(names[i], f);
        fwrite(member[i], 1, size[i], f);
    }
    uint32_t cd = (uint32_t)ftell(f);
    for (int i = 0; i < 4; i++) {
        put_le(f, 0x02014b50, 4);
        put_le(f, 20, 2), put_le(f, 20, 2), put_le(f, 0, 2), put_le(f, 0, 2), put_le(f, 0, 4);
        put_le(f, crc[i], 4), put_le(f, (uint32_t)size[i], 4), put_le(f, (uint32_t)size[i], 4);
        put_le(f, (uint32_t)strlen(names[i]), 2), put_le(f, 0, 2), put_le(f, 0, 2);
        put_le(f, 0, 2), put_le(f, 0, 2), put_le(f, 0, 4), put_le(f, off[i], 4);
        fputs(names[i], f);
    }
    uint32_t cd_end = (uint32_t)ftell(f);
    put_le(f, 0x06054b50, 4), put_le(f, 0, 2), put_le(f, 0, 2), put_le(f, 4, 2), put_le(f, 4, 2);
    put_le(f, cd_end - cd, 4), put_le(f, cd, 4), put_le(f, 0, 2);
    ck_assert_int_eq(fclose(f), 0);
}

/* No file in ds but, optionally, `keep`; no temporaries either. */
static int only_file(const char *ds, const char *keep) {
    DIR *d = opendir(ds);
    if (!d) return keep == NULL;
    struct dirent *de;
    int ok = 1;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && !(keep && !strcmp(de->d_name, keep))) ok = 0;
    closedir(d);
    return ok;
}

static void setup(void) {
    dir = kc_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
    const char *src = getenv("KERASC_SRC");
    snprintf(fix_dir, sizeof fix_dir, "%s" FIX, src && *src ? src : ".");
    snprintf(serve_dir, sizeof serve_dir, "%s/served", dir);
    ck_assert_int_eq(mkdir(serve_dir, 0700), 0);
    serve("imdb_p4.npz", "imdb.npz");
    serve("boston_housing.npz", "boston_housing.npz");
    serve("imdb_word_index.json", "imdb_word_index.json");
    char p[4800];
    snprintf(p, sizeof p, "%s/imdb.npz", serve_dir);
    kc_error e = {0};
    ck_assert_int_eq(kc_download_hash_file(p, 64, imdb_sha, &e), KC_OK);
    snprintf(p, sizeof p, "%s/mnist.npz", serve_dir);
    write_mnist_npz(p);
    ck_assert_int_eq(kc_download_hash_file(p, 64, mnist_sha, &e), KC_OK);
    start_server();
    setenv("KERASC_OFFLINE", "0", 1);
    setenv("HOME", dir, 1);
    kc_download_set_offline(0);
}

static void teardown(void) {
    stop_server();
    unsetenv("KERASC_DOWNLOAD_URL_BASE");
    unsetenv("KERASC_DOWNLOAD_HASHES");
    unsetenv("KERAS_HOME");
    kc_test_rmdir(dir);
    free(dir);
}

/* ---- tests ---- */

static int64_t progress_last = -2, progress_calls;
static void on_progress(void *ctx, const char *name, int64_t done, int64_t total) {
    progress_calls++;
    if (done == total) progress_last = done;
}

START_TEST(download_on_first_use) {
    char ds[4400], p[4600];
    fresh_home("ok", ds, sizeof ds);
    use_mode("ok");
    set_hashes(imdb_sha);
    kc_download_set_progress(on_progress, NULL);
    kc_seq_data d;
    kc_error e = {0};
    ck_assert_msg(kc_seq_dataset_load("imdb", NULL, NULL, &d, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_gt(d.x_train.n, 0);
    kc_seq_data_free(&d);
    kc_download_set_progress(NULL, NULL);
    snprintf(p, sizeof p, "%s/imdb.npz", ds);
    char h[65];
    ck_assert_int_eq(kc_download_hash_file(p, 64, h, &e), KC_OK);
    ck_assert_str_eq(h, imdb_sha);
    ck_assert(only_file(ds, "imdb.npz"));
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(progress_last, st.st_size);
    ck_assert_int_gt(progress_calls, 0);
    /* used from the cache afterwards: the server's copy gone, still loads */
    stop_server();
    server = 0;
    ck_assert_msg(kc_seq_dataset_load("imdb", NULL, NULL, &d, &e) == KC_OK, "%s", e.msg);
    kc_seq_data_free(&d);
    start_server();
    /* boston_housing (sha256) and the word index (md5) the same way */
    use_mode("ok");
    kc_array a[4];
    ck_assert_msg(kc_dataset_load("boston_housing", NULL, &a[0], &a[1], &a[2], &a[3], &e) == KC_OK,
                  "%s", e.msg);
    ck_assert_int_eq(a[0].shape.d[1], 13);
    for (int i = 0; i < 4; i++)
        kc_array_free(&a[i]);
    kc_word_index w;
    ck_assert_msg(kc_word_index_load("imdb", NULL, &w, &e) == KC_OK, "%s", e.msg);
    ck_assert_int_gt(w.nranks, 1);
    kc_word_index_free(&w);
    /* mnist through its own loader, checked and in place */
    ck_assert_msg(kc_dataset_load("mnist", NULL, &a[0], &a[1], &a[2], &a[3], &e) == KC_OK, "%s",
                  e.msg);
    ck_assert_int_eq(a[0].shape.d[0], 3);
    ck_assert_int_eq(a[2].shape.d[0], 2);
    ck_assert_int_eq(((const uint8_t *)a[0].data)[1], 8);
    for (int i = 0; i < 4; i++)
        kc_array_free(&a[i]);
    snprintf(p, sizeof p, "%s/mnist.npz", ds);
    ck_assert_int_eq(kc_download_hash_file(p, 64, h, &e), KC_OK);
    ck_assert_str_eq(h, mnist_sha);
}
END_TEST

START_TEST(damaged_downloads_are_removed) {
    char ds[4400];
    kc_seq_data d;
    kc_error e = {0};
    static const struct {
        const char *mode, *hash, *says;
    } cases[] = {
        {"404", NULL, "HTTP 404"},
        {"trunc", NULL, "failed after"},
        {"ok", "0000000000000000000000000000000000000000000000000000000000000000",
         "not the expected 0000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fresh_home(cases[i].mode, ds, sizeof ds);
        use_mode(cases[i].mode);
        set_hashes(cases[i].hash ? cases[i].hash : imdb_sha);
        ck_assert_int_eq(kc_seq_dataset_load("imdb", NULL, NULL, &d, &e), KC_ERUNTIME);
        ck_assert_msg(strstr(e.msg, cases[i].says), "%s: %s", cases[i].mode, e.msg);
        ck_assert_msg(strstr(e.msg, "imdb.npz not found"), "%s", e.msg);
        ck_assert_msg(strstr(e.msg, ds), "%s", e.msg);
        /* how to place it by hand */
        ck_assert_msg(strstr(e.msg, KC_KERAS_DATASETS_URL "imdb.npz into ~/.keras/datasets/"), "%s",
                      e.msg);
        ck_assert_msg(only_file(ds, NULL), "%s left files behind", cases[i].mode);
    }
    /* the library call says the same directly */
    fresh_home("direct", ds, sizeof ds);
    use_mode("trunc");
    char p[4600];
    ck_assert_int_eq(kc_download_fetch("imdb.npz", NULL, p, sizeof p, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "/trunc/imdb.npz") && strstr(e.msg, ds), "%s", e.msg);
    ck_assert(only_file(ds, NULL));
    ck_assert_int_eq(kc_download_fetch("cifar-10-python.tar.gz", NULL, p, sizeof p, &e),
                     KC_ERUNTIME);
    ck_assert_ptr_nonnull(strstr(e.msg, "does not download"));
    ck_assert_int_eq(kc_download_fetch("nonesuch.npz", NULL, p, sizeof p, &e), KC_ERUNTIME);
}
END_TEST

START_TEST(offline_keeps_the_search_message) {
    char ds[4400], p[4600];
    kc_seq_data d;
    kc_error e = {0};
    fresh_home("off", ds, sizeof ds);
    use_mode("ok");
    set_hashes(imdb_sha);
    setenv("KERASC_OFFLINE", "1", 1);
    ck_assert(!kc_download_allowed());
    ck_assert_int_eq(kc_seq_dataset_load("imdb", NULL, NULL, &d, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "imdb.npz not found") && !strstr(e.msg, "download of"), "%s",
                  e.msg);
    ck_assert_int_eq(kc_download_fetch("imdb.npz", NULL, p, sizeof p, &e), KC_ERUNTIME);
    ck_assert_ptr_nonnull(strstr(e.msg, "downloads are off"));
    setenv("KERASC_OFFLINE", "0", 1);
    kc_download_set_offline(1);
    ck_assert(!kc_download_allowed());
    kc_download_set_offline(0);
    ck_assert(kc_download_allowed());
    ck_assert(only_file(ds, NULL));
}
END_TEST

/* The binary: --offline refuses, without it the data is fetched. */
START_TEST(binary_offline_option) {
    kerasc = getenv("KERASC");
    if (!kerasc || !*kerasc) return;
    write_file("b.yaml", "model:\n  layers:\n    - Input: {shape: [13]}\n    - Dense: {units: 1}\n"
                         "compile: {optimizer: adam, loss: mse}\n"
                         "data: {dataset: boston_housing}\nfit: {epochs: 1, batch_size: 32}\n");
    char ds[4400], env[4800];
    fresh_home("cli", ds, sizeof ds);
    use_mode("ok");
    set_hashes(imdb_sha);
    snprintf(env, sizeof env, "KERAS_HOME='%s/home-cli'", dir);
    ck_assert_int_ne(run_env(env, "train b.yaml --offline --output r"), 0);
    ck_assert_msg(strstr(err_buf, "boston_housing.npz not found"), "%s", err_buf);
    ck_assert(only_file(ds, NULL));
    ck_assert_msg(run_env(env, "train b.yaml --output r") == 0, "%s", err_buf);
    ck_assert(only_file(ds, "boston_housing.npz"));
    /* stderr is no terminal here: no progress bar */
    ck_assert_ptr_null(strstr(err_buf, "Downloading"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("download");
    TCase *tc = tcase_create("download");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, download_on_first_use);
    tcase_add_test(tc, damaged_downloads_are_removed);
    tcase_add_test(tc, offline_keeps_the_search_message);
    tcase_add_test(tc, binary_offline_option);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}
