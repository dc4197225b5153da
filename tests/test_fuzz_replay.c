/* Replays the fuzz corpora: every file of tests/fuzz/seeds/<name>/ and
 * tests/fuzz/crashes/<name>/ through harness <name> (tests/fuzz/fuzz_<name>.c,
 * linked here as kc_fuzz_<name>). A harness reports a broken invariant by
 * aborting and the sanitizer builds abort on memory errors, so a reproducer
 * of a defect that is back makes this suite crash; the file is named on
 * stderr first. As under `make fuzz`, no single allocation may exceed
 * REPLAY_MAX_ALLOC (the link wraps malloc, calloc, realloc and
 * aligned_alloc): a small file must never make the library ask for that
 * much. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tests/testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

/* Keep in step with -malloc_limit_mb in tests/fuzz/run.sh. */
#define REPLAY_MAX_ALLOC ((size_t)256 << 20)

#define HARNESSES(X)                                                                               \
    X(json)                                                                                        \
    X(config)                                                                                      \
    X(keras_json)                                                                                  \
    X(keras_archive)                                                                               \
    X(safetensors)                                                                                 \
    X(checkpoint)                                                                                  \
    X(idx)                                                                                         \
    X(npy)                                                                                         \
    X(npz)                                                                                         \
    X(csv)                                                                                         \
    X(pickle)                                                                                      \
    X(cifar)

#define DECLARE(name) int kc_fuzz_##name(const uint8_t *data, size_t size);
HARNESSES(DECLARE)

typedef struct harness {
    const char *name;
    int (*run)(const uint8_t *data, size_t size);
} harness;

#define ENTRY(name) {#name, kc_fuzz_##name},
static const harness harnesses[] = {HARNESSES(ENTRY)};
#define NHARNESS ((int)(sizeof harnesses / sizeof harnesses[0]))

/* ---- the allocation limit ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);

static void too_large(const char *fn, size_t n) {
    fprintf(stderr, "fuzz replay: %s of %zu bytes, over the %zu-byte limit\n", fn, n,
            REPLAY_MAX_ALLOC);
    abort();
}

void *__wrap_malloc(size_t n) {
    if (n > REPLAY_MAX_ALLOC) too_large("malloc", n);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size) {
    size_t bytes;
    if (!__builtin_mul_overflow(n, size, &bytes) && bytes > REPLAY_MAX_ALLOC)
        too_large("calloc", bytes);
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n) {
    if (n > REPLAY_MAX_ALLOC) too_large("realloc", n);
    return __real_realloc(p, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n) {
    if (n > REPLAY_MAX_ALLOC) too_large("aligned_alloc", n);
    return __real_aligned_alloc(align, n);
}

/* ---- naming the file that crashed ---- */

static char current[4096];

static void say_current(void) {
    static const char pre[] = "fuzz replay: crashed on ";
    if (!current[0]) return;
    if (write(2, pre, sizeof pre - 1) < 0 || write(2, current, strlen(current)) < 0 ||
        write(2, "\n", 1) < 0)
        return;
}

static void on_signal(int sig) {
    say_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* UndefinedBehaviorSanitizer has no death callback of its own: it aborts,
 * and on_signal names the file. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) {
    return "abort_on_error=1";
}

static void name_crashes(void) {
    signal(SIGABRT, on_signal);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_set_death_callback(say_current);
#else
    signal(SIGSEGV, on_signal);
    signal(SIGBUS, on_signal);
    signal(SIGFPE, on_signal);
#endif
}

/* ---- the corpora ---- */

static const char *src_dir(void) {
    const char *s = getenv("KERASC_SRC");
    return s && *s ? s : ".";
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir (no dot files), sorted; *n of them; NULL when dir is absent. */
static char **list_dir(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue;
        names = realloc(names, (size_t)(*n + 1) * sizeof *names);
        ck_assert_ptr_nonnull(names);
        names[(*n)++] = strdup(ent->d_name);
    }
    closedir(d);
    if (*n) qsort(names, (size_t)*n, sizeof *names, cmp_names);
    return names;
}

static void free_list(char **names, int n) {
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    uint8_t *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? 2 * cap : 65536;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        size_t got = fread(buf + *len, 1, cap - *len, f);
        *len += got;
        if (!got) break;
    }
    ck_assert_msg(!ferror(f), "cannot read %s", path);
    fclose(f);
    return buf;
}

/* Runs every file of tests/fuzz/<kind>/<name>/; returns how many there were. */
static int replay_dir(const harness *h, const char *kind) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/%s/%s", src_dir(), kind, h->name);
    int n;
    char **names = list_dir(dir, &n);
    for (int i = 0; i < n; i++) {
        snprintf(current, sizeof current, "%s/%s", dir, names[i]);
        size_t len;
        uint8_t *data = read_file(current, &len);
        ck_assert_int_eq(h->run(data, len), 0);
        free(data);
    }
    current[0] = 0;
    free_list(names, n);
    return n;
}

START_TEST(replay) {
    const harness *h = &harnesses[_i];
    name_crashes();
    int seeds = replay_dir(h, "seeds");
    replay_dir(h, "crashes");
    ck_assert_msg(seeds > 0, "harness %s has no seeds in tests/fuzz/seeds/%s", h->name, h->name);
}
END_TEST

static int known(const char *name) {
    for (int i = 0; i < NHARNESS; i++)
        if (!strcmp(harnesses[i].name, name)) return 1;
    return 0;
}

/* Every harness in tests/fuzz is replayed here, and every corpus belongs to one. */
START_TEST(every_harness_replayed) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz", src_dir());
    int n, found = 0;
    char **names = list_dir(dir, &n);
    ck_assert_msg(names != NULL, "no %s", dir);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        if (strncmp(names[i], "fuzz_", 5) || len < 8 || strcmp(names[i] + len - 2, ".c")) continue;
        names[i][len - 2] = 0;
        ck_assert_msg(known(names[i] + 5), "tests/fuzz/%s.c is not in HARNESSES", names[i]);
        found++;
    }
    ck_assert_int_eq(found, NHARNESS);
    free_list(names, n);
    const char *kinds[] = {"seeds", "crashes"};
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/tests/fuzz/%s", src_dir(), kinds[k]);
        names = list_dir(dir, &n);
        for (int i = 0; i < n; i++)
            ck_assert_msg(known(names[i]), "tests/fuzz/%s/%s belongs to no harness", kinds[k],
                          names[i]);
        free_list(names, n);
    }
}
END_TEST

/* The limit is in force: an allocation over it aborts, one at it does not. */
START_TEST(allocation_limit_in_force) {
    void *(*volatile alloc)(size_t) = malloc;
    void *p = alloc(REPLAY_MAX_ALLOC);
    ck_assert_ptr_nonnull(p);
    free(p);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2);
        p = alloc(REPLAY_MAX_ALLOC + 1);
        _exit(p ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
}
END_TEST

int main(void) {
    Suite *s = suite_create("fuzz_replay");
    TCase *t = tcase_create("corpora");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, every_harness_replayed);
    tcase_add_test(t, allocation_limit_in_force);
    tcase_add_loop_test(t, replay, 0, NHARNESS);
    suite_add_tcase(s, t);
    return kc_test_run(s);
}
