/* The progress of dataset downloads on stderr, when it is a terminal:
 *   Downloading imdb.npz [=========>                    ]  5.7/17.5 MB
 * redrawn in place, at most every 0.1 s, ended with a newline. */
#ifndef KC_CLI_DOWNLOAD_PROGRESS_H
#define KC_CLI_DOWNLOAD_PROGRESS_H

/* Sets up models/data/download.h for a command: downloads off when
 * `offline`, and the progress bar when stderr is a terminal. */
void kc_cli_download_setup(int offline);

#endif
