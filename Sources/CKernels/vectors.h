// 16-lane float vectors for the C kernels (clang's vector extensions: one AVX-512 register, two
// AVX2 or four SSE ones), and the multiversioning that picks the widest the CPU has at load time.
#pragma once
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULTIVERSION
#endif
#define INLINE static inline __attribute__((always_inline))

typedef float vf __attribute__((vector_size(64)));
typedef int vi __attribute__((vector_size(64)));
enum { LANES = 16 };

/// Lane numbers.
static const vi IOTA = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// Unaligned loads and stores, and lane masks. Macros, not functions: a 64-byte vector may not be
// passed or returned by value in the AVX2 and baseline builds.
#define LOAD(T, p) ({ T v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define STORE(T, p, v) do { T v_ = (v); __builtin_memcpy((p), &v_, sizeof v_); } while (0)
#define ld(p) LOAD(vf, p)
#define st(p, v) STORE(vf, p, v)
/// v where `mask` is all ones, else 0: a select, not a product, so that NaN in a dropped lane drops.
#define keep(v, mask) ((vf)((vi)(v) & (mask)))
/// Lanes 0 ..< n all ones, the others 0.
#define lanes_below(n) (IOTA < (n))

// The even and odd floats of a:b (32 floats), and their inverse.
#define EVENS(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define ODDS(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#define ZIP_LO(e, o) __builtin_shufflevector(e, o, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define ZIP_HI(e, o) __builtin_shufflevector(e, o, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)


/// p (at or before `end`), when `need` 4-byte elements from p lie before `end`; else a copy of
/// those that do, zeros after.
INLINE const void *readable(const void *p, size_t need, const void *end, void *copy) {
    const size_t have = (size_t)((const char *)end - (const char *)p) / 4;
    if (have >= need) return p;
    memcpy(copy, p, 4 * have);
    memset((char *)copy + 4 * have, 0, 4 * (need - have));
    return copy;
}

/// Stores `nv` vectors (in `v`, laid out contiguously) at p: all of them when they fit before
/// `end`, else only the first `valid` floats.
INLINE void put(void *p, const void *v, int nv, size_t valid, const void *end) {
    if ((size_t)((const char *)end - (const char *)p) / 4 >= (size_t)nv * LANES)
        memcpy(p, v, 4 * LANES * (size_t)nv);  // a constant size, after inlining: vector stores
    else
        memcpy(p, v, 4 * valid);
}
