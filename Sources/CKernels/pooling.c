// MaxPool2d's common case, a 2x2 window at stride 2, with the compiler's vectorization of the
// interleaved loads (Pooling.swift has the general loop, with the same rule).
#include "ckernels.h"

#if defined(__x86_64__) && defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULTIVERSION
#endif

// m, i = the window's maximum and its position so far; v at position j replaces them when larger,
// or when it is NaN and m is not (NaN wins, as in torch; the first of equal values stays).
#define TAKE(v, j) do { float v_ = (v); int better_ = v_ > m || (v_ != v_ && m == m); m = better_ ? v_ : m; i = better_ ? (j) : i; } while (0)

MULTIVERSION
void ckernels_maxpool2x2(const float *x, size_t planes, int h, int w, int ho, int wo, float *y, int32_t *argmax) {
    for (size_t plane = 0; plane < planes; plane++) {
        const float *xp = x + plane * (size_t)h * w;
        float *yp = y + plane * (size_t)ho * wo;
        int32_t *ap = argmax + plane * (size_t)ho * wo;
        for (int oh = 0; oh < ho; oh++) {
            const float *restrict r0 = xp + (size_t)(2 * oh) * w, *restrict r1 = r0 + w;
            float *restrict ym = yp + (size_t)oh * wo;
            int32_t *restrict am = ap + (size_t)oh * wo;
            const int base = 2 * oh * w;
            for (int ow = 0; ow < wo; ow++) {
                float m = r0[2 * ow];
                int32_t i = base + 2 * ow;
                TAKE(r0[2 * ow + 1], base + 2 * ow + 1);
                TAKE(r1[2 * ow], base + w + 2 * ow);
                TAKE(r1[2 * ow + 1], base + w + 2 * ow + 1);
                ym[ow] = m;
                am[ow] = i;
            }
        }
    }
}

// The adjoint: each window's four inputs get dy at its argmax and zero elsewhere (0 + dy, as the
// general path's dx[argmax] += dy on zeros gives), in one pass that writes dx in order. Rows and
// columns past the last window (odd h or w) get zero. With `relu_y`, the landed gradient is then
// multiplied by ReLU's derivative at the pooled output y (1 where y > 0, else 0).
MULTIVERSION
void ckernels_maxpool2x2_backward(const float *dy, const int32_t *argmax, size_t planes, int h, int w, int ho, int wo,
                                  const float *relu_y, float *dx) {
    for (size_t plane = 0; plane < planes; plane++) {
        const float *yp = relu_y ? relu_y + plane * (size_t)ho * wo : NULL;
        const float *dyp = dy + plane * (size_t)ho * wo;
        const int32_t *ap = argmax + plane * (size_t)ho * wo;
        float *dxp = dx + plane * (size_t)h * w;
        for (int oh = 0; oh < ho; oh++) {
            float *restrict r0 = dxp + (size_t)(2 * oh) * w, *restrict r1 = r0 + w;
            const float *restrict d = dyp + (size_t)oh * wo;
            const int32_t *restrict a = ap + (size_t)oh * wo;
            const int base = 2 * oh * w;
            const float *restrict y = yp ? yp + (size_t)oh * wo : NULL;
            for (int ow = 0; ow < wo; ow++) {
                const float g = y ? (0.0f + d[ow]) * (y[ow] > 0 ? 1.0f : 0.0f) : 0.0f + d[ow];
                const int32_t at = a[ow] - base - 2 * ow;  // 0, 1, w or w + 1
                r0[2 * ow] = at == 0 ? g : 0.0f;
                r0[2 * ow + 1] = at == 1 ? g : 0.0f;
                r1[2 * ow] = at == w ? g : 0.0f;
                r1[2 * ow + 1] = at == w + 1 ? g : 0.0f;
            }
            for (int j = 2 * wo; j < w; j++) r0[j] = r1[j] = 0.0f;
        }
        for (int i = 2 * ho; i < h; i++)
            for (int j = 0; j < w; j++) dxp[(size_t)i * w + j] = 0.0f;
    }
}
