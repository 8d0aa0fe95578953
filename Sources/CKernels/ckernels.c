#include "ckernels.h"

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
