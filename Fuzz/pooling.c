// libFuzzer target: MaxPool2d(2, stride 2) forward and backward (Sources/CKernels/pooling.c) against
// the plain per-window loops, bit for bit, on buffers of exactly their sizes, under ASan.
//
// The input picks a geometry (planes 1-12, image 2-50 x 2-50, odd sizes included), whether the
// backward applies ReLU's derivative, and the values: drawn from a few levels so that windows hold
// ties, with NaN, infinities and -0 among them. The kernels move whole 16-float vectors past row
// ends; this checks that they never touch memory outside x, y, argmax, dy, relu_y and dx, and that
// every maximum, position and gradient is the reference's, bit for bit. A mismatch aborts.
#include "ckernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The reference: the rule of Pooling.swift's general loop. The window's positions in the order
// (0, 0), (0, 1), (1, 0), (1, 1); a later one replaces the maximum when larger, or when it is NaN
// and the maximum is not.
static void reference(const float *x, size_t planes, int h, int w, int ho, int wo, float *y, int32_t *argmax) {
    for (size_t p = 0; p < planes; p++)
        for (int oh = 0; oh < ho; oh++)
            for (int ow = 0; ow < wo; ow++) {
                int32_t best = 2 * oh * w + 2 * ow;
                float m = x[p * h * w + best];
                const int32_t at[3] = {best + 1, best + w, best + w + 1};
                for (int k = 0; k < 3; k++) {
                    const float v = x[p * h * w + at[k]];
                    if (v > m || (isnan(v) && !isnan(m))) { m = v; best = at[k]; }
                }
                y[(p * ho + oh) * wo + ow] = m;
                argmax[(p * ho + oh) * wo + ow] = best;
            }
}

// dx = 0 + dy at the argmax (times ReLU's derivative at y with relu_y), zero elsewhere.
static void reference_backward(const float *dy, const int32_t *argmax, size_t planes, int h, int w, int ho, int wo,
                               const float *relu_y, float *dx) {
    memset(dx, 0, sizeof(float) * planes * h * w);
    for (size_t p = 0; p < planes; p++)
        for (size_t o = 0; o < (size_t)ho * wo; o++) {
            const size_t k = p * ho * wo + o;
            dx[p * h * w + argmax[k]] = relu_y ? (0.0f + dy[k]) * (relu_y[k] > 0 ? 1.0f : 0.0f) : 0.0f + dy[k];
        }
}

static const uint8_t *data_at;
static size_t data_left;
static float next_value(void) {
    static const float levels[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 2.0f, -3.0f, NAN, INFINITY, -INFINITY};
    if (!data_left) return 1.0f;
    data_left--;
    const uint8_t b = *data_at++;
    return b < 200 ? levels[b % 7] : levels[7 + b % 3];  // NaN and infinities are rarer
}

static float *values(size_t n) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = next_value();
    return p;
}

static void same(const char *what, const void *want, const void *got, size_t n, size_t planes, int h, int w) {
    for (size_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, (const char *)want + 4 * i, 4);
        memcpy(&b, (const char *)got + 4 * i, 4);
        if (a == b) continue;
        fprintf(stderr, "%s[%zu]: want bits %08x, got %08x (%zu planes of %dx%d)\n", what, i, a, b, planes, h, w);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    const size_t planes = 1 + data[0] % 12;
    const int h = 2 + data[1] % 49, w = 2 + data[2] % 49, relu = data[3] & 1;
    const int ho = h / 2, wo = w / 2;
    const size_t in = planes * h * w, out = planes * ho * wo;
    data_at = data + 4;
    data_left = size - 4;

    float *x = values(in), *dy = values(out);
    float *y = malloc(sizeof(float) * out), *want_y = malloc(sizeof(float) * out);
    int32_t *a = malloc(sizeof(int32_t) * out), *want_a = malloc(sizeof(int32_t) * out);
    float *dx = malloc(sizeof(float) * in), *want_dx = malloc(sizeof(float) * in);

    ckernels_maxpool2x2(x, planes, h, w, ho, wo, y, a);
    reference(x, planes, h, w, ho, wo, want_y, want_a);
    same("y", want_y, y, out, planes, h, w);
    same("argmax", want_a, a, out, planes, h, w);

    ckernels_maxpool2x2_backward(dy, a, planes, h, w, ho, wo, relu ? y : NULL, dx);
    reference_backward(dy, a, planes, h, w, ho, wo, relu ? y : NULL, want_dx);
    same("dx", want_dx, dx, in, planes, h, w);

    free(x); free(dy); free(y); free(want_y); free(a); free(want_a); free(dx); free(want_dx);
    return 0;
}
