/* kerasc --list-devices: what --backend and --device can choose. */
#include <string.h>

#include "cli/commands.h"

/* The backend's lines ("0: name"), indented under its heading. */
static void print_lines(FILE *f, const char *text) {
    while (*text) {
        size_t len = strcspn(text, "\n");
        if (len) fprintf(f, "  %.*s\n", (int)len, text);
        text += len + (text[len] == '\n');
    }
}

static void list_backend(FILE *f, const kc_backend *be) {
    fprintf(f, "%s: %s\n", be->name, be->description ? be->description : "");
    if (!be->list_devices) {
        fprintf(f, "  0: %s\n", be->name);
        return;
    }
    char buf[4096] = "";
    int n = be->list_devices(buf, sizeof buf);
    if (n < 0)
        fprintf(f, "  no devices: %.*s\n", (int)strcspn(buf, "\n"),
                *buf ? buf : "unavailable here");
    else if (n == 0)
        fprintf(f, "  no devices\n");
    else
        print_lines(f, buf);
}

int kc_cli_list_devices(FILE *f) {
    for (int i = 0; kc_backends[i]; i++)
        list_backend(f, kc_backends[i]);
    fprintf(f, "\nChoose with --backend NAME and --device N (or KERASC_DEVICE=N); the default is "
               "cpu, device 0.\n");
    return fflush(f) ? 1 : 0;
}
