// MaxPool2d's common case, a 2x2 window at stride 2, forward and backward (Pooling.swift has the
// general loop, with the same rule), 16 windows at a time in the vectors of vectors.h.
//
// How they run, as winograd.c's transforms do: only contiguous loads and stores, no gathers.
// - A step takes 16 windows of one output row: 32 floats of each of its two input rows, split into
//   even and odd columns by shuffles (and zipped back together in backward).
// - Reads may run past a row's end into the rest of the buffer (those lanes are dropped); within
//   a vector of the buffer's end, they read a copy instead (`readable`).
// - Stores may run past a row's end too. What they write there is overwritten later: rows are
//   written in increasing address order, and where a row takes several steps, its last (partial)
//   step runs first. Stores within a vector of a buffer's end write only the valid floats (`put`),
//   so a call reads and writes nothing outside its buffers.
// Fuzz/pooling.c checks both against the plain loops, on exact-size buffers under ASan.
#include "ckernels.h"
#include "maxpool.h"

MULTIVERSION
void ckernels_maxpool2x2(const float *x, size_t planes, int h, int w, int ho, int wo, float *y, int32_t *argmax) {
    const float *x_end = x + planes * (size_t)h * w;
    const float *y_end = y + planes * (size_t)ho * wo;
    const int32_t *a_end = argmax + planes * (size_t)ho * wo;
    const int last = (wo - 1) & ~(LANES - 1);  // the start of each row's last step
    float in[2][2 * LANES];
    for (size_t plane = 0; plane < planes; plane++) {
        const float *xp = x + plane * (size_t)h * w;
        float *yp = y + plane * (size_t)ho * wo;
        int32_t *ap = argmax + plane * (size_t)ho * wo;
        for (int oh = 0; oh < ho; oh++) {
            const int base = 2 * oh * w;
            for (int ow = last; ow >= 0; ow -= LANES) {
                const float *p0 = readable(xp + base + 2 * ow, 2 * LANES, x_end, in[0]);
                const float *p1 = readable(xp + base + w + 2 * ow, 2 * LANES, x_end, in[1]);
                const vf a0 = ld(p0), a1 = ld(p0 + LANES), b0 = ld(p1), b1 = ld(p1 + LANES);
                const vf v[4] = {EVENS(a0, a1), ODDS(a0, a1), EVENS(b0, b1), ODDS(b0, b1)};
                const vi at = base + 2 * ow + 2 * IOTA;  // each window's top-left position
                vf m;
                vi i;
                window_max(v, &at, w, &m, &i);
                const size_t valid = (size_t)(wo - ow < LANES ? wo - ow : LANES);
                put(yp + (size_t)oh * wo + ow, &m, 1, valid, y_end);
                put(ap + (size_t)oh * wo + ow, &i, 1, valid, a_end);
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
    const size_t outs = planes * (size_t)ho * wo;
    const float *dx_end = dx + planes * (size_t)h * w;
    const int last = (wo - 1) & ~(LANES - 1);
    struct pooled_grad s = {dy, dy + outs, relu_y, relu_y ? relu_y + outs : NULL, argmax, argmax + outs, {{0}}};
    for (size_t plane = 0; plane < planes; plane++) {
        const size_t o = plane * (size_t)ho * wo;
        float *dxp = dx + plane * (size_t)h * w;
        for (int oh = 0; oh < ho; oh++) {
            const int base = 2 * oh * w;
            float *r0 = dxp + base, *r1 = r0 + w;
            for (int ow = last; ow >= 0; ow -= LANES) {
                const int valid = wo - ow < LANES ? wo - ow : LANES;
                const vi at = base + 2 * ow + 2 * IOTA;
                vf g, yy[2][2];
                window_grads(&s, o + (size_t)oh * wo + ow, valid, &at, w, &g, yy);
                const vf top[2] = {ZIP_LO(yy[0][0], yy[0][1]), ZIP_HI(yy[0][0], yy[0][1])};
                const vf bottom[2] = {ZIP_LO(yy[1][0], yy[1][1]), ZIP_HI(yy[1][0], yy[1][1])};
                put(r0 + 2 * ow, top, 2, 2 * (size_t)valid, dx_end);
                put(r1 + 2 * ow, bottom, 2, 2 * (size_t)valid, dx_end);
            }
            for (int j = 2 * wo; j < w; j++) r0[j] = r1[j] = 0.0f;
        }
        for (int i = 2 * ho; i < h; i++)
            for (int j = 0; j < w; j++) dxp[(size_t)i * w + j] = 0.0f;
    }
}
