// Adam's update (Optim's Adam.swift), 16 lanes at a time: Swift's SIMD square root is done lane by
// lane with a library call on SSE, this one is a vector instruction. The operations and their order
// are Adam.swift's, and nothing is contracted into fused multiply-adds, so the result is the same
// bits on every CPU (square root and division are correctly rounded).
#include "ckernels.h"
#include "vectors.h"
#include <math.h>

#pragma clang fp contract(off)

MULTIVERSION
void ckernels_adam(float *p, const float *g, float *m, float *v, size_t count, float b1, float b2, float l2,
                   float decay, float step_size, float bc2_sqrt, float eps) {
    size_t i = 0;
    for (; i + LANES <= count; i += LANES) {
        const vf pv = ld(p + i);
        const vf gi = ld(g + i) + l2 * pv;
        const vf mi = b1 * ld(m + i) + (1 - b1) * gi;
        const vf vi = b2 * ld(v + i) + (1 - b2) * gi * gi;
        st(m + i, mi);
        st(v + i, vi);
        st(p + i, pv * decay - step_size * mi / (__builtin_elementwise_sqrt(vi) / bc2_sqrt + eps));
    }
    for (; i < count; i++) {
        const float gi = g[i] + l2 * p[i];
        const float mi = b1 * m[i] + (1 - b1) * gi;
        const float vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}
