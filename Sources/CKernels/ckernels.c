#include "ckernels.h"
#include <string.h>

typedef float v4sf __attribute__((vector_size(16), aligned(16)));
typedef float v4sf_u __attribute__((vector_size(16), aligned(4)));

void ckernels_stream_copy(float *dst, const float *src, size_t count) {
    size_t i = 0;
    for (; i + 4 <= count; i += 4) {
        v4sf v = *(const v4sf_u *)(src + i);
        __builtin_nontemporal_store(v, (v4sf *)(dst + i));
    }
    for (; i < count; i++) dst[i] = src[i];
    __builtin_ia32_sfence();
}

void ckernels_f32_to_bf16(uint16_t *dst, const float *src, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        if ((u & 0x7f800000u) == 0x7f800000u) {
            dst[i] = (uint16_t)((u >> 16) | ((u & 0xffffu) ? 0x40u : 0));
        } else {
            dst[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
    }
}

void ckernels_bf16_to_f32(float *dst, const uint16_t *src, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

void ckernels_atomic_add_release(int64_t *p, int64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELEASE); }
int64_t ckernels_atomic_load_acquire(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
