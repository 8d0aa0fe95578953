// Winograd F(2x2, 3x3) transforms (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016), with the matrices
//
//   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1   |
//
// y = A^T [(G g G^T) . (B^T d B)] A is the 2x2 cross-correlation of the 4x4 patch d with the 3x3
// kernel g. Each transform is written as two 1-D passes, the first over whole rows of the image
// and the second over the tiles of a row, so the inner loops run over contiguous memory (tiles)
// and vectorize. The gradients are the exact adjoints (transposes) of the forward maps.
#include "winograd.h"
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULTIVERSION
#endif

void wino_kernels(const float *w, int cout, int cin, int transposed, float *u) {
    const size_t plane = (size_t)cout * cin;
    for (size_t k = 0; k < plane; k++) {
        const float *g = w + 9 * k;
        float t[4][3];  // G g: rows combined
        for (int c = 0; c < 3; c++) {
            float g0 = g[c], g1 = g[3 + c], g2 = g[6 + c];
            t[0][c] = g0;
            t[1][c] = 0.5f * (g0 + g1 + g2);
            t[2][c] = 0.5f * (g0 - g1 + g2);
            t[3][c] = g2;
        }
        // Plane position of kernel k = (co, ci): co * cin + ci, or ci * cout + co transposed.
        const size_t at = transposed ? (k % cin) * cout + k / cin : k;
        for (int r = 0; r < 4; r++) {
            float t0 = t[r][0], t1 = t[r][1], t2 = t[r][2];
            u[(4 * r + 0) * plane + at] = t0;
            u[(4 * r + 1) * plane + at] = 0.5f * (t0 + t1 + t2);
            u[(4 * r + 2) * plane + at] = 0.5f * (t0 - t1 + t2);
            u[(4 * r + 3) * plane + at] = t2;
        }
    }
}

void wino_kernels_grad(const double *du, int cout, int cin, float *dw, int accumulate) {
    const size_t plane = (size_t)cout * cin;
    for (size_t k = 0; k < plane; k++) {
        double t[4][3];  // du G: columns folded back
        for (int r = 0; r < 4; r++) {
            double d0 = du[(4 * r + 0) * plane + k], d1 = du[(4 * r + 1) * plane + k];
            double d2 = du[(4 * r + 2) * plane + k], d3 = du[(4 * r + 3) * plane + k];
            t[r][0] = d0 + 0.5 * (d1 + d2);
            t[r][1] = 0.5 * (d1 - d2);
            t[r][2] = 0.5 * (d1 + d2) + d3;
        }
        float *g = dw + 9 * k;
        for (int c = 0; c < 3; c++) {
            float g0 = (float)(t[0][c] + 0.5 * (t[1][c] + t[2][c]));
            float g1 = (float)(0.5 * (t[1][c] - t[2][c]));
            float g2 = (float)(0.5 * (t[1][c] + t[2][c]) + t[3][c]);
            if (accumulate) {
                g[c] += g0; g[3 + c] += g1; g[6 + c] += g2;
            } else {
                g[c] = g0; g[3 + c] = g1; g[6 + c] = g2;
            }
        }
    }
}

MULTIVERSION
void wino_sum(double *restrict sum, const float *restrict du, size_t count, int first) {
    if (first) {
        for (size_t i = 0; i < count; i++) sum[i] = du[i];
    } else {
        for (size_t i = 0; i < count; i++) sum[i] += du[i];
    }
}

// The input transforms' scratch: the image in a frame of zeros (ph x pw, so that every tile's 4x4
// patch lies inside), then four rows of pw for the row pass; and the plane stride of v.
struct frame {
    int ph, pw, tiles;
    size_t plane;
    float *padded, *rows[4];
};

static inline struct frame frame_of(float *scratch, int channels, int ty, int tx) {
    struct frame f = {2 * ty + 2, 2 * tx + 2, ty * tx, (size_t)channels * ty * tx, scratch, {0}};
    for (int i = 0; i < 4; i++) f.rows[i] = scratch + (size_t)f.ph * f.pw + (size_t)i * f.pw;
    return f;
}

// out[t] = a[2t + i] - a[2t + j] or + (the column pass of B^T, one plane at a time).
static inline void pairs(int tx, const float *restrict a, int i, int j, float sign, float *restrict out) {
    for (int t = 0; t < tx; t++) out[t] = a[2 * t + i] + sign * a[2 * t + j];
}

MULTIVERSION
void wino_input(const float *x, int channels, int h, int w, int pad, int ty, int tx,
                float *scratch, float *v) {
    const struct frame f = frame_of(scratch, channels, ty, tx);
    const int ph = f.ph, pw = f.pw, tiles = f.tiles;
    const size_t plane = f.plane;
    float *restrict padded = f.padded;
    float *restrict a0 = f.rows[0], *restrict a1 = f.rows[1], *restrict a2 = f.rows[2], *restrict a3 = f.rows[3];
    // The image inside a frame of zeros: every tile's patch then lies inside. Only the inside is
    // rewritten channel by channel.
    memset(padded, 0, sizeof(float) * (size_t)ph * pw);
    for (int c = 0; c < channels; c++) {
        const float *restrict image = x + (size_t)c * h * w;
        for (int i = 0; i < h; i++) {
            float *restrict dst = padded + (size_t)(i + pad) * pw + pad;
            const float *restrict src = image + (size_t)i * w;
            for (int j = 0; j < w; j++) dst[j] = src[j];
        }
        for (int r = 0; r < ty; r++) {
            // B^T over the patch rows, whole padded rows at once.
            const float *restrict d0 = padded + (size_t)(2 * r) * pw, *restrict d1 = d0 + pw, *restrict d2 = d1 + pw, *restrict d3 = d2 + pw;
            for (int k = 0; k < pw; k++) {
                a0[k] = d0[k] - d2[k];
                a1[k] = d1[k] + d2[k];
                a2[k] = d2[k] - d1[k];
                a3[k] = d1[k] - d3[k];
            }
            // B^T over the patch columns: tile t's columns are 2t..2t+3 of the row.
            for (int i = 0; i < 4; i++) {
                float *o = v + (size_t)(4 * i) * plane + (size_t)c * tiles + (size_t)r * tx;
                pairs(tx, f.rows[i], 0, 2, -1, o);
                pairs(tx, f.rows[i], 1, 2, 1, o + plane);
                pairs(tx, f.rows[i], 2, 1, -1, o + 2 * plane);
                pairs(tx, f.rows[i], 1, 3, -1, o + 3 * plane);
            }
        }
    }
}

MULTIVERSION
void wino_input_grad(const float *dv, int channels, int h, int w, int pad, int ty, int tx,
                     float *scratch, float *dx) {
    const struct frame f = frame_of(scratch, channels, ty, tx);
    const int ph = f.ph, pw = f.pw, tiles = f.tiles;
    const size_t plane = f.plane;
    float *restrict padded = f.padded;
    float *restrict a0 = f.rows[0], *restrict a1 = f.rows[1], *restrict a2 = f.rows[2], *restrict a3 = f.rows[3];
    for (int c = 0; c < channels; c++) {
        memset(padded, 0, sizeof(float) * (size_t)ph * pw);
        for (int r = 0; r < ty; r++) {
            // The adjoint of the column pass: (dv0, dv1, dv2, dv3) of a tile go back to its four
            // columns as (dv0, dv1 - dv2 + dv3, -dv0 + dv1 + dv2, -dv3); neighbours share two.
            for (int i = 0; i < 4; i++) {
                const float *restrict q0 = dv + (size_t)(4 * i) * plane + (size_t)c * tiles + (size_t)r * tx;
                const float *restrict q1 = q0 + plane, *restrict q2 = q1 + plane, *restrict q3 = q2 + plane;
                float *restrict a = f.rows[i];
                a[0] = q0[0];
                for (int t = 1; t < tx; t++) a[2 * t] = q0[t] + (q1[t - 1] + q2[t - 1] - q0[t - 1]);
                a[2 * tx] = q1[tx - 1] + q2[tx - 1] - q0[tx - 1];
                for (int t = 0; t < tx; t++) a[2 * t + 1] = q1[t] - q2[t] + q3[t];
                for (int t = 1; t < tx; t++) a[2 * t + 1] -= q3[t - 1];
                a[2 * tx + 1] = -q3[tx - 1];
            }
            // The adjoint of the row pass, added into the patch rows.
            float *restrict d0 = padded + (size_t)(2 * r) * pw;
            for (int k = 0; k < pw; k++) d0[k] += a0[k];
            float *restrict d1 = d0 + pw;
            for (int k = 0; k < pw; k++) d1[k] += a1[k] - a2[k] + a3[k];
            float *restrict d2 = d1 + pw;
            for (int k = 0; k < pw; k++) d2[k] += a1[k] + a2[k] - a0[k];
            float *restrict d3 = d2 + pw;
            for (int k = 0; k < pw; k++) d3[k] -= a3[k];
        }
        float *restrict image = dx + (size_t)c * h * w;
        for (int i = 0; i < h; i++) {
            const float *restrict src = padded + (size_t)(i + pad) * pw + pad;
            float *restrict dst = image + (size_t)i * w;
            for (int j = 0; j < w; j++) dst[j] = src[j];
        }
    }
}

// out[t] = q[t] + s1 q[t + p] + s2 q[t + 2p] (p: the plane stride).
static inline void three(int n, const float *restrict q, size_t p, float s1, float s2, float *restrict out) {
    for (int t = 0; t < n; t++) out[t] = q[t] + s1 * q[t + p] + s2 * q[t + 2 * p];
}

// out[t] = a[t] + sign * b[t].
static inline void combine(int n, const float *restrict a, const float *restrict b, float sign, float *restrict out) {
    for (int t = 0; t < n; t++) out[t] = a[t] + sign * b[t];
}

MULTIVERSION
void wino_output(const float *m, int channels, int ho, int wo, int ty, int tx, float *scratch, float *y) {
    const int tiles = ty * tx;
    const size_t plane = (size_t)channels * tiles;
    float *restrict s = scratch;              // s0 of patch row i at s[i * tiles], s1 at s[(4 + i) * tiles]
    float *restrict out = scratch + 8 * tiles; // y00, y01, y10, y11 of every tile (tiles each)
    for (int k = 0; k < channels; k++) {
        const float *q = m + (size_t)k * tiles;
        // A^T over the columns of each patch row i, for all the channel's tiles at once...
        for (int i = 0; i < 4; i++) {
            three(tiles, q + 4 * i * plane, plane, 1, 1, s + i * tiles);             // m0 + m1 + m2
            three(tiles, q + (4 * i + 1) * plane, plane, -1, -1, s + (4 + i) * tiles); // m1 - m2 - m3
        }
        // ... then over the rows: y0b = s[0] + s[1] + s[2], y1b = s[1] - s[2] - s[3].
        for (int b = 0; b < 2; b++) {
            three(tiles, s + 4 * b * tiles, tiles, 1, 1, out + b * tiles);
            three(tiles, s + (4 * b + 1) * tiles, tiles, -1, -1, out + (2 + b) * tiles);
        }
        // Into the image: tile (r, t) covers rows 2r, 2r+1 and columns 2t, 2t+1, cut at (ho, wo).
        const int odd = wo / 2;
        for (int r = 0; r < ty; r++) {
            for (int a = 0; a < 2 && 2 * r + a < ho; a++) {
                float *restrict row = y + ((size_t)k * ho + 2 * r + a) * wo;
                const float *restrict even = out + (2 * a) * tiles + r * tx, *restrict odds = even + tiles;
                for (int t = 0; t < tx; t++) row[2 * t] = even[t];
                for (int t = 0; t < odd; t++) row[2 * t + 1] = odds[t];
            }
        }
    }
}

MULTIVERSION
void wino_output_grad(const float *dy, int channels, int ho, int wo, int ty, int tx, float *scratch, float *dm) {
    const int tiles = ty * tx;
    const size_t plane = (size_t)channels * tiles;
    float *restrict y = scratch;               // y00, y01, y10, y11 of every tile (tiles each)
    float *restrict eo = scratch + 4 * tiles;  // e[0..3], o[0..3] (tiles each)
    const int odd = wo / 2;
    for (int k = 0; k < channels; k++) {
        // Each tile's 2x2 of dy, zeros past the output's edge.
        for (int r = 0; r < ty; r++) {
            for (int a = 0; a < 2; a++) {
                float *restrict even = y + (2 * a) * tiles + r * tx, *restrict odds = even + tiles;
                if (2 * r + a < ho) {
                    const float *restrict row = dy + ((size_t)k * ho + 2 * r + a) * wo;
                    for (int t = 0; t < tx; t++) even[t] = row[2 * t];
                    for (int t = 0; t < odd; t++) odds[t] = row[2 * t + 1];
                    for (int t = odd; t < tx; t++) odds[t] = 0;
                } else {
                    for (int t = 0; t < tx; t++) even[t] = odds[t] = 0;
                }
            }
        }
        // A over the rows: (y0, y0 + y1, y0 - y1, -y1), for the even column (e) and the odd (o)...
        for (int b = 0; b < 2; b++) {
            const float *y0 = y + b * tiles, *y1 = y + (2 + b) * tiles;
            float *e = eo + 4 * b * tiles;
            for (int t = 0; t < tiles; t++) e[t] = y0[t];
            combine(tiles, y0, y1, 1, e + tiles);
            combine(tiles, y0, y1, -1, e + 2 * tiles);
            for (int t = 0; t < tiles; t++) (e + 3 * tiles)[t] = -y1[t];
        }
        // ... then over the columns: (e, e + o, e - o, -o).
        float *q = dm + (size_t)k * tiles;
        for (int i = 0; i < 4; i++) {
            const float *e = eo + i * tiles, *o = eo + (4 + i) * tiles;
            float *restrict qi = q + 4 * i * plane;
            for (int t = 0; t < tiles; t++) qi[t] = e[t];
            combine(tiles, e, o, 1, qi + plane);
            combine(tiles, e, o, -1, qi + 2 * plane);
            float *restrict q3 = qi + 3 * plane;
            for (int t = 0; t < tiles; t++) q3[t] = -o[t];
        }
    }
}
