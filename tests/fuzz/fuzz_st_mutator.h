/* A libFuzzer custom mutator for safetensors inputs: it mutates the JSON
 * header or the data section on their own and rewrites the 8-byte length in
 * front, so a mutated header still reaches the parser behind the length
 * check. Tensor offsets count from the start of the data section, so they
 * stay meaningful when the header changes length. Not part of the replay
 * build, which has no libFuzzer to call. */
#ifndef KC_FUZZ_ST_MUTATOR_H
#define KC_FUZZ_ST_MUTATOR_H

#ifndef KC_FUZZ_REPLAY

#include "tests/fuzz/fuzz_util.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static inline uint64_t fuzz_le64(const uint8_t *p) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | p[i];
    return n;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    uint64_t n = size >= 8 ? fuzz_le64(data) : 0;
    if (n == 0 || n > size - 8 || max_size < size || seed % 8 == 0)
        return LLVMFuzzerMutate(data, size, max_size);
    size_t body = size - 8 - (size_t)n;
    if (seed % 8 == 1 && body > 0) { /* the data section */
        size_t room = max_size - 8 - (size_t)n;
        return 8 + (size_t)n + LLVMFuzzerMutate(data + 8 + n, body, room);
    }
    /* the header: mutated in a copy, then the data section moved behind it */
    uint8_t *copy = malloc(max_size);
    if (!copy) return size;
    memcpy(copy, data + 8, (size_t)n);
    size_t room = max_size - 8 - body;
    size_t hn = LLVMFuzzerMutate(copy, (size_t)n, room);
    memmove(data + 8 + hn, data + 8 + n, body);
    memcpy(data + 8, copy, hn);
    free(copy);
    for (int i = 0; i < 8; i++)
        data[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    return 8 + hn + body;
}

#endif
#endif
