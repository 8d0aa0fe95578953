// libFuzzer target: Winograd's F(2x2, 3x3) transforms (Sources/CKernels/winograd.c) against a
// plain per-tile reference in double, on buffers of exactly the documented sizes, under ASan.
//
// The input picks a geometry (channels 1-40, image 1-48 x 1-48, padding 0-3) and seeds the values.
// The transforms read and write whole vectors past the ends of rows; this checks that they never
// touch memory outside the caller's images (x, y, dx, dy), the planes with their slack and the
// work floats, and that every value is right. A mismatch aborts.
#include "winograd.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const double AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};

static uint64_t state;
static float next_value(void) {  // splitmix64, to [-1, 1)
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (float)((double)((z ^ (z >> 31)) >> 40) / (double)(1ull << 23) - 1.0);
}

static float *values(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = next_value();
    return p;
}

static void check(const char *what, double want, float got, int c, int h, int w, int pad) {
    if (fabs(want - (double)got) <= 1e-5 * fmax(1.0, fabs(want))) return;
    fprintf(stderr, "%s: want %.9g, got %.9g (channels %d, %dx%d, padding %d)\n", what, want, got, c, h, w, pad);
    abort();
}

static void same_bits(const char *what, const void *want, const void *got, size_t n, int c, int ho, int wo) {
    for (size_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, (const char *)want + 4 * i, 4);
        memcpy(&b, (const char *)got + 4 * i, 4);
        if (a == b) continue;
        fprintf(stderr, "%s[%zu]: want bits %08x, got %08x (channels %d, output %dx%d)\n", what, i, a, b, c, ho, wo);
        abort();
    }
}

// The output transforms fused with MaxPool2d(2, stride 2) against the passes they replace, bit for
// bit: wino_output (y, checked above), Conv2d's epilogue (+ bias, ReLU as max(v, 0)) and the
// pooling; backward, wino_output_grad of the dense gradient MaxPool2d's backward writes. The bias
// gradient, summed in another order, against a sum in double.
static void check_fused(const float *m, const float *y, int c, int ho, int wo, int ty, int tx, uint8_t flags, float *work) {
    const int ph = ho / 2, pw = wo / 2, tiles = ty * tx;
    const int with_bias = flags & 1, relu = (flags >> 1) & 1, first = (flags >> 2) & 1;
    const size_t outs = (size_t)c * ph * pw, plane = wino_plane_stride(c, tiles);
    float *bias = values(c), *pooled = malloc(sizeof(float) * outs), *want = malloc(sizeof(float) * (outs + 1));
    int32_t *am = malloc(sizeof(int32_t) * outs), *want_am = malloc(sizeof(int32_t) * (outs + 1));
    wino_output_maxpool(m, c, ho, wo, ty, tx, with_bias ? bias : NULL, relu, pooled, am);
    for (int k = 0; k < c; k++)
        for (int r = 0; r < ph; r++)
            for (int t = 0; t < pw; t++) {
                float best = 0;
                int32_t at = 0;
                for (int j = 0; j < 4; j++) {
                    const int32_t pos = 2 * r * wo + 2 * t + (j & 1) + (j >> 1) * wo;
                    float v = y[(size_t)k * ho * wo + pos];
                    if (with_bias || relu) v = v + (with_bias ? bias[k] : 0.0f);
                    if (relu) v = 0 >= v ? 0.0f : v;
                    if (j == 0 || v > best || (isnan(v) && !isnan(best))) { best = v; at = pos; }
                }
                want[((size_t)k * ph + r) * pw + t] = best;
                want_am[((size_t)k * ph + r) * pw + t] = at;
            }
    same_bits("wino_output_maxpool", want, pooled, outs, c, ho, wo);
    same_bits("wino_output_maxpool argmax", want_am, am, outs, c, ho, wo);

    float *dp = values(outs), *dense = calloc((size_t)c * ho * wo, sizeof(float));
    for (size_t o = 0; o < outs; o++) {
        const size_t k = o / ((size_t)ph * pw);
        dense[k * ho * wo + am[o]] = relu ? (0.0f + dp[o]) * (pooled[o] > 0 ? 1.0f : 0.0f) : 0.0f + dp[o];
    }
    float *want_dm = malloc(sizeof(float) * 16 * plane), *dm = malloc(sizeof(float) * 16 * plane);
    float *bg = values(c), *bg0 = malloc(sizeof(float) * c);
    memcpy(bg0, bg, sizeof(float) * c);
    wino_output_grad(dense, c, ho, wo, ty, tx, work, want_dm);
    wino_output_grad_maxpool(dp, am, relu ? pooled : NULL, c, ho, wo, ty, tx, with_bias ? bg : NULL, first, dm);
    for (int xi = 0; xi < 16; xi++) same_bits("wino_output_grad_maxpool", want_dm + xi * plane, dm + xi * plane, (size_t)c * tiles, c, ho, wo);
    for (int k = 0; with_bias && k < c; k++) {
        double sum = first ? 0 : bg0[k], size = fabs(sum);
        for (size_t i = 0; i < (size_t)ho * wo; i++) { sum += dense[k * ho * wo + i]; size += fabs(dense[k * ho * wo + i]); }
        if (!(fabs(sum - bg[k]) <= 1e-6 * fmax(1.0, size)) && !(isnan(sum) && isnan(bg[k]))) {
            fprintf(stderr, "bias gradient[%d]: want %.9g, got %.9g (channels %d, output %dx%d)\n", k, sum, bg[k], c, ho, wo);
            abort();
        }
    }
    free(bias); free(pooled); free(want); free(am); free(want_am); free(dp); free(dense); free(want_dm); free(dm);
    free(bg); free(bg0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    const int c = 1 + data[0] % 40, h = 1 + data[1] % 48, w = 1 + data[2] % 48, pad = data[3] % 4;
    const int ho = h + 2 * pad - 2, wo = w + 2 * pad - 2;
    if (ho < 1 || wo < 1) return 0;
    const int ty = (ho + 1) / 2, tx = (wo + 1) / 2, tiles = ty * tx;
    state = 0;
    for (size_t i = 4; i < size; i++) state = state * 131 + data[i];
    const size_t plane = wino_plane_stride(c, tiles);

    float *x = values((size_t)c * h * w), *dy = values((size_t)c * ho * wo);
    float *dv = values(16 * plane), *m = values(16 * plane);
    float *v = malloc(sizeof(float) * 16 * plane), *vt = malloc(sizeof(float) * 16 * c * tiles);
    float *y = malloc(sizeof(float) * c * ho * wo), *dx = malloc(sizeof(float) * c * h * w);
    float *dm = malloc(sizeof(float) * 16 * plane), *work = malloc(sizeof(float) * wino_work_floats(ty, tx));
    double *ref = calloc((size_t)c * h * w, sizeof(double));

    wino_input(x, c, h, w, pad, ty, tx, work, v);
    wino_transpose_planes(v, c, tiles, vt);
    wino_input_grad(dv, c, h, w, pad, ty, tx, work, dx);
    wino_output(m, c, ho, wo, ty, tx, y);
    wino_output_grad(dy, c, ho, wo, ty, tx, work, dm);

    for (int k = 0; k < c; k++) {
        for (int r = 0; r < ty; r++) {
            for (int t = 0; t < tx; t++) {
                const size_t at = (size_t)k * tiles + (size_t)r * tx + t;
                double d[4][4], g[4][4];  // the tile's patch, and the 2x2 of dy (zeros outside)
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        const int yy = 2 * r + i - pad, xx = 2 * t + j - pad;
                        d[i][j] = yy >= 0 && yy < h && xx >= 0 && xx < w ? x[((size_t)k * h + yy) * w + xx] : 0;
                        g[i][j] = i < 2 && j < 2 && 2 * r + i < ho && 2 * t + j < wo ? dy[((size_t)k * ho + 2 * r + i) * wo + 2 * t + j] : 0;
                    }
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        double vij = 0, dmij = 0, dd = 0;  // B^T d B, A g A^T, B dv B^T
                        for (int p = 0; p < 4; p++)
                            for (int q = 0; q < 4; q++) {
                                vij += BT[i][p] * d[p][q] * BT[j][q];
                                dd += BT[p][i] * dv[(size_t)(4 * p + q) * plane + at] * BT[q][j];
                                if (p < 2 && q < 2) dmij += AT[p][i] * g[p][q] * AT[q][j];
                            }
                        const size_t xi = 4 * i + j;
                        check("wino_input", vij, v[xi * plane + at], c, h, w, pad);
                        check("wino_transpose_planes", v[xi * plane + at], vt[xi * c * tiles + ((size_t)r * tx + t) * c + k], c, h, w, pad);
                        check("wino_output_grad", dmij, dm[xi * plane + at], c, h, w, pad);
                        const int yy = 2 * r + i - pad, xx = 2 * t + j - pad;
                        if (yy >= 0 && yy < h && xx >= 0 && xx < w) ref[((size_t)k * h + yy) * w + xx] += dd;
                    }
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) {
                        if (2 * r + a >= ho || 2 * t + b >= wo) continue;
                        double out = 0;  // A^T m A
                        for (int p = 0; p < 4; p++)
                            for (int q = 0; q < 4; q++) out += AT[a][p] * m[(size_t)(4 * p + q) * plane + at] * AT[b][q];
                        check("wino_output", out, y[((size_t)k * ho + 2 * r + a) * wo + 2 * t + b], c, h, w, pad);
                    }
            }
        }
    }
    for (size_t i = 0; i < (size_t)c * h * w; i++) check("wino_input_grad", ref[i], dx[i], c, h, w, pad);
    check_fused(m, y, c, ho, wo, ty, tx, data[4], work);

    free(x); free(dy); free(dv); free(m); free(v); free(vt); free(y); free(dx); free(dm); free(work); free(ref);
    return 0;
}
