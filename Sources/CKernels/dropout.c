// Dropout's keep-mask from the counter-based hash (Engine's CounterRandom, bit for bit): the 64-bit
// multiplies vectorize with AVX-512DQ.
#include "ckernels.h"

#if defined(__x86_64__) && defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx512dq", "avx2", "default")))
#else
#define MULTIVERSION
#endif

static inline uint64_t split_mix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

MULTIVERSION
void ckernels_dropout_mask(uint8_t *mask, uint64_t key, size_t count, float p) {
    for (size_t i = 0; i < count; i++) {
        float u = (float)(split_mix64(key ^ split_mix64(i)) >> 40) * 0x1p-24f;
        mask[i] = u >= p;
    }
}

MULTIVERSION
void ckernels_apply_mask(float *dst, const float *src, const uint8_t *mask, size_t count, float scale) {
    // Element i reads and writes only index i: safe to vectorize when dst is src.
#pragma clang loop vectorize(assume_safety)
    for (size_t i = 0; i < count; i++) dst[i] = mask[i] ? src[i] * scale : 0.0f;
}
