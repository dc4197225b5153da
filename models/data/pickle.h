/* A bounded reader for the two kinds of pickle Keras's datasets hold: a numpy
 * object array (what np.save writes for dtype=object, in imdb.npz and
 * reuters.npz) whose elements are Python lists of ints, or 1-d integer
 * ndarrays; and the dict of a CIFAR batch file (Python 2's cPickle,
 * protocol 2) holding a uint8 ndarray and lists of ints.
 *
 * Only the opcodes pickle emits for such an array at protocols 2..5 are
 * understood: PROTO, FRAME, GLOBAL / STACK_GLOBAL of numpy's _reconstruct
 * (numpy.core.multiarray or numpy._core.multiarray), numpy.ndarray,
 * numpy.dtype and _codecs.encode (protocol 2's bytes), REDUCE, BUILD, MARK,
 * tuples, lists (EMPTY_LIST, LIST, APPEND, APPENDS), dicts (EMPTY_DICT,
 * DICT, SETITEM, SETITEMS), ints (BININT, BININT1, BININT2, LONG1), None /
 * True / False, strings and bytes (BINUNICODE, BINSTRING, SHORT_BINSTRING,
 * BINBYTES...; Python 2's str is raw bytes as array data), the memo (PUT,
 * GET, MEMOIZE) and STOP. Anything else is an error naming the opcode and
 * its offset; nothing is ever called or imported. Every length, count, memo
 * index and nesting depth is checked against the bytes present and fixed
 * limits, so a hostile stream costs memory proportional to its size and
 * gives an error, never a crash. */
#ifndef KC_DATA_PICKLE_H
#define KC_DATA_PICKLE_H

#include <stddef.h>

#include "core/error.h"
#include "models/data/data.h"
#include "models/data/sequences.h"

/* Limits (exceeding one is an error naming it). */
#define KC_PICKLE_MAX_STACK (1 << 20)   /* values on the stack */
#define KC_PICKLE_MAX_MARKS 64          /* open MARKs: nesting depth */
#define KC_PICKLE_MAX_MEMO (1 << 22)    /* memo slots */
#define KC_PICKLE_MAX_TOKENS (1L << 28) /* ids in all sequences together */

/* Parses p[0..n) (the bytes after a .npy header) into one sequence per
 * element of the rank-1 object array; ids must fit in int32. `name` (the
 * file and member) starts every error message. Errors are KC_ERUNTIME; on
 * error *out is left empty. */
int kc_pickle_ragged(const unsigned char *p, size_t n, const char *name, kc_ragged *out,
                     kc_error *e);

/* Parses p[0..n) as a pickled dict (a CIFAR batch file) and takes two of its
 * values, found by their str or bytes keys (a later equal key wins, as in
 * Python): data_key's, a 2-d uint8 ndarray in C order, into *data (uint8,
 * shape as stored); label_key's, a list of ints or a 1-d integer ndarray with
 * one item per row of data, into *labels (malloc'd, *nlabels items). Other
 * values are parsed and ignored. Errors (KC_ERUNTIME) start with `name`; a
 * missing key names the keys present. On error nothing is left allocated.
 * Long strings are not copied while parsing: p must stay valid until the
 * call returns (and only until then). */
int kc_pickle_batch(const unsigned char *p, size_t n, const char *name, const char *data_key,
                    const char *label_key, kc_array *data, int64_t **labels, int64_t *nlabels,
                    kc_error *e);

#endif
