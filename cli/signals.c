/* Ctrl-C and SIGTERM during training: the first asks the trainer to finish
 * the step, write a checkpoint and stop; a second ends the process at once.
 * Checkpoints are written to a temporary name and renamed, so stopping at
 * any moment never damages a file that already exists; the next run
 * removes the temporary a stop at once leaves behind. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"

static volatile sig_atomic_t interrupts;

static void on_signal(int sig) {
    (void)sig;
    if (++interrupts > 1) {
        static const char msg[] =
            "\nkerasc: stopped at once; files already on disk are untouched\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(130);
    }
}

void kc_cli_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* a reader that goes away (kerasc train | head) is a write error, on
     * which training saves its state and stops (cli/progress_hooks.c) */
    signal(SIGPIPE, SIG_IGN);
}

int kc_cli_interrupted(void) {
    return interrupts > 0;
}
