// Conv2d's per-channel passes over one sample, for its common case (no activation or ReLU), 16
// lanes at a time: Swift's loops run on SSE only. Each is the Swift loop's arithmetic, operation
// for operation (Conv2d.swift keeps the general form, for sigmoid and tanh): the same bits.
#include "ckernels.h"
#include "vectors.h"

MULTIVERSION
void ckernels_bias_relu(float *y, size_t channels, size_t pixels, const float *bias, int relu) {
    const vf zero = {};
    for (size_t c = 0; c < channels; c++) {
        float *row = y + c * pixels;
        const float b = bias ? bias[c] : 0.0f;
        const vf bv = zero + b;
        size_t p = 0;
        for (; p + LANES <= pixels; p += LANES) {
            vf v = ld(row + p) + bv;
            if (relu) v = keep(v, ~(zero >= v));  // Swift's max(v, 0): 0 >= v ? 0 : v
            st(row + p, v);
        }
        for (; p < pixels; p++) {
            const float v = row[p] + b;
            row[p] = relu && 0 >= v ? 0.0f : v;
        }
    }
}

MULTIVERSION
void ckernels_relu_grad_bias_sums(float *g, const float *y, size_t channels, size_t pixels, float *bias_grad, int first) {
    const vf zero = {}, one = zero + 1.0f;
    for (size_t c = 0; c < channels; c++) {
        float *row = g + c * pixels;
        const float *yr = y ? y + c * pixels : NULL;
        // One pass: the derivative, and 16 running sums of the result; then their total in lane
        // order from -0 (Swift's SIMD sum()), then the rest.
        vf lanes = zero;
        size_t p = 0;
        for (; p + LANES <= pixels; p += LANES) {
            vf v = ld(row + p);
            if (yr) {
                v *= keep(one, ld(yr + p) > 0);
                st(row + p, v);
            }
            lanes += v;
        }
        float sum = -0.0f;
        for (int j = 0; j < LANES; j++) sum += lanes[j];
        for (; p < pixels; p++) {
            if (yr) row[p] *= yr[p] > 0 ? 1.0f : 0.0f;
            sum += row[p];
        }
        if (bias_grad) bias_grad[c] = first ? sum : bias_grad[c] + sum;
    }
}
