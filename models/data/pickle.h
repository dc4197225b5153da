/* A bounded reader for the one kind of pickle Keras's sequence datasets hold:
 * a numpy object array (what np.save writes for dtype=object) whose elements
 * are Python lists of ints, or 1-d integer ndarrays.
 *
 * Only the opcodes pickle emits for such an array at protocols 2..5 are
 * understood: PROTO, FRAME, GLOBAL / STACK_GLOBAL of numpy's _reconstruct
 * (numpy.core.multiarray or numpy._core.multiarray), numpy.ndarray,
 * numpy.dtype and _codecs.encode (protocol 2's bytes), REDUCE, BUILD, MARK,
 * tuples, lists (EMPTY_LIST, LIST, APPEND, APPENDS), ints (BININT, BININT1,
 * BININT2, LONG1), None / True / False, strings and bytes, the memo (PUT,
 * GET, MEMOIZE) and STOP. Anything else is an error naming the opcode and
 * its offset; nothing is ever called or imported. Every length, count, memo
 * index and nesting depth is checked against the bytes present and fixed
 * limits, so a hostile stream costs memory proportional to its size and
 * gives an error, never a crash. */
#ifndef KC_DATA_PICKLE_H
#define KC_DATA_PICKLE_H

#include <stddef.h>

#include "core/error.h"
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

#endif
