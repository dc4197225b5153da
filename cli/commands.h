/* The kerasc verbs. Each returns the process exit status: 0 success,
 * 1 runtime failure, 2 usage or config error. */
#ifndef KC_CLI_COMMANDS_H
#define KC_CLI_COMMANDS_H

#include <stdio.h>

#include "core/error.h"
#include "models/fit.h"

int kc_cmd_train(int argc, char **argv);
int kc_cmd_evaluate(int argc, char **argv);
int kc_cmd_summary(int argc, char **argv);
int kc_cmd_predict(int argc, char **argv);
int kc_cmd_plot(int argc, char **argv);
int kc_cmd_plot_history(int argc, char **argv);
int kc_cmd_convert(int argc, char **argv);
int kc_cmd_export(int argc, char **argv);
int kc_cmd_applications(int argc, char **argv);
int kc_cmd_bench(int argc, char **argv);
int kc_cmd_preprocess(int argc, char **argv);

/* Draws the curves of a history.csv into a PNG, written to a temporary file
 * and renamed into place (cli/plot_history.c). Errors name the file and line. */
int kc_plot_history(const char *csv_path, const char *png_path, const char *title, kc_error *e);

/* Shared by the verbs (cli/common.c). */
int kc_cli_report(const char *verb, const kc_error *e); /* prints, returns the exit status */
int kc_cli_usage_error(const char *verb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Standard output (cli/output.c). The first write error it has shown, or 0. */
int kc_cli_stdout_error(void);
/* Flushes it; returns the first write error, or 0. */
int kc_cli_stdout_flush(void);
/* A verb has told the user about the error itself: kc_cli_finish stays quiet. */
void kc_cli_stdout_reported(void);
/* Before exit: flushes and closes standard output; a write error that was
 * not reported is said on stderr ("kerasc: cannot write standard output:
 * REASON") and makes a successful status 1. Returns the exit status. */
int kc_cli_finish(int status);
/* Before the work: can the file `path` be written (created or replaced, its
 * directory existing)? Removes its stale temporaries. `what` names it in
 * messages ("--output file"). */
int kc_cli_prepare_output(const char *path, const char *what, kc_error *e);
/* An output location named on the command line that cannot be written is a
 * runtime failure (status 1), as any failed write of an output file, even
 * where the path itself is wrong; only the model file's paths (callbacks)
 * are config errors. Returns rc with KC_ECONFIG made KC_ERUNTIME. */
int kc_cli_output_failure(int rc, kc_error *e);
/* Parses a non-negative integer option value. */
int kc_cli_parse_count(const char *verb, const char *opt, const char *s, long long min,
                       long long *out);

/* The options the verbs that run a model share (getopt values), read by
 * kc_cli_parse_run_opt; a verb's own options start at 300. */
enum {
    KC_OPT_EPOCHS = 256,
    KC_OPT_BATCH,
    KC_OPT_STEPS,
    KC_OPT_SEED,
    KC_OPT_THREADS,
    KC_OPT_OUTPUT,
    KC_OPT_VERBOSE,
    KC_OPT_BACKEND,
    KC_OPT_DEVICE,
};
/* Clears o; the device stays unset until kc_cli_run_opts_finish. */
void kc_cli_run_opts_init(kc_run_opts *o);
/* One shared option; returns 0, or the exit status of a usage error. */
int kc_cli_parse_run_opt(const char *verb, int c, const char *arg, kc_run_opts *o,
                         long long *verbose);
/* After the options: without --device, the device comes from $KERASC_DEVICE
 * (else 0). Returns 0, or the exit status of a usage error. */
int kc_cli_run_opts_finish(const char *verb, kc_run_opts *o);
/* kerasc --list-devices: every built-in backend and its devices, or why it has none. */
int kc_cli_list_devices(FILE *f);
/* A YAML model file, a checkpoint carrying one, or a Keras model (.json, .keras). */
/* Keras's warning for a layer given a mask it does not support (the mask
 * ends there), on stderr; nothing when the model drops none. */
void kc_cli_warn_mask_dropped(const char *verb, const kc_config *cfg);
int kc_cli_load_config(const char *path, kc_config **out, int *is_checkpoint, kc_error *e);
/* Progress hooks printing Keras-style bars (cli/progress_hooks.c). */
typedef struct kc_cli_progress kc_cli_progress;
kc_cli_progress *kc_cli_progress_new(int verbose, int epochs_line);
void kc_cli_progress_free(kc_cli_progress *p);
/* Also append JSON lines to path: one per epoch, and one every `every` steps when > 0. */
int kc_cli_progress_log_json(kc_cli_progress *p, const char *path, long long every, kc_error *e);
/* The hooks. Their `interrupted` also answers yes once a write to standard
 * output or to the JSON log has failed, so that training stops after
 * saving its state. */
void kc_cli_progress_hooks(kc_cli_progress *p, kc_hooks *h);
/* Closes the JSON log; the first failed write of the progress output (the
 * JSON log, else standard output), as an error naming it. Returns 0 when
 * every write succeeded. A standard output error returned here counts as
 * reported (kc_cli_stdout_reported). */
int kc_cli_progress_output_error(kc_cli_progress *p, kc_error *e);
/* SIGINT/SIGTERM: the first sets the flag the trainer polls, a second exits
 * 130 at once. SIGPIPE is ignored, so that a closed pipe on standard output
 * is a write error training stops on, after saving, rather than death. */
void kc_cli_signals_install(void);
int kc_cli_interrupted(void);
/* Resolves verbose "auto" (-1): 1 on a terminal, else 2 (one line per epoch). */
int kc_cli_verbose(int cfg_verbose);

#endif
