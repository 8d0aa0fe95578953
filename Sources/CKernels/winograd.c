// Winograd F(2x2, 3x3) transforms (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016), with the matrices
//
//   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1   |
//
// y = A^T [(G g G^T) . (B^T d B)] A is the 2x2 cross-correlation of the 4x4 patch d with the 3x3
// kernel g. The gradients are the exact adjoints (transposes) of the forward maps.
//
// How they run. Every loop works on 16 floats at a time (`vf`, which the compiler lowers to one
// AVX-512 register, two AVX2 or four SSE ones) and reads and writes only contiguous memory: no
// gathers or scatters, which cost more than the arithmetic on some CPUs.
//
// - Tile rows. A step takes 16 tiles of one tile row. Their 4x4 patches are framed rows 2r ..< 2r+4,
//   columns 2t ..< 2t+4: each framed row is read straight from the caller's image, split into even
//   and odd columns by shuffles, with the frame's zeros masked in (`row_at`, `lanes_in`). Outputs
//   go back the same way, even and odd columns zipped.
// - Slack. A vector may run past the end of a row. What it writes there is overwritten by a later
//   store: rows are written in increasing address order, and where a row takes several steps the
//   last one runs first. So every buffer of ours has at least 16 floats of slack after it (the
//   planes of v and m too: `wino_plane_stride`), and only the caller's images (x, y, dx, dy) are
//   read and written exactly: through a copy of the row near their ends (`row_at`), and the last
//   stores of each with only the valid floats (`put`, vectors.h).
//
// Fuzz/winograd.c checks all of it against a plain per-tile reference, under ASan.
#include "winograd.h"
#include "maxpool.h"
#include "vectors.h"
#include <string.h>

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t wino_plane_stride(int channels, int tiles) { return round16((size_t)channels * tiles) + LANES; }

// ---- Kernels ---------------------------------------------------------------------------------

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

// ---- The transforms' scratch -----------------------------------------------------------------

/// A transform's scratch, laid out in the caller's `scratch`.
struct work {
    float *zero;     // a row of zeros (the frame above and below an image; `zero_row`)
    float *row[4];   // copies of image rows near the ends of the caller's buffer (see `row_at`)
    float *q[16];    // wino_input_grad: one channel's B dv B^T, as 16 planes of (TY + 2) x (TX + 2),
                     // tile (r, t) at (r + 1, t + 1), zeros around
    int stride;      // TX + 2, the row length of q
};

/// Floats in a row buffer and in one plane of q.
static void work_sizes(int ty, int tx, size_t *row, size_t *q) {
    *row = round16(2 * (size_t)tx + 3 * LANES);
    *q = round16(((size_t)ty + 2) * ((size_t)tx + 2) + 3 * LANES);
}

size_t wino_work_floats(int ty, int tx) {
    size_t row, q;
    work_sizes(ty, tx, &row, &q);
    return 5 * row + 16 * q;
}

static struct work work_of(float *scratch, int ty, int tx) {
    size_t row, q;
    work_sizes(ty, tx, &row, &q);
    struct work s;
    s.zero = scratch;
    for (int i = 0; i < 4; i++) s.row[i] = scratch + (1 + i) * row;
    for (int i = 0; i < 16; i++) s.q[i] = scratch + 5 * row + i * q;
    s.stride = tx + 2;
    return s;
}

/// The row of zeros, for the transforms that read it (rows outside an image).
static void zero_row(const struct work *s) { memset(s->zero, 0, sizeof(float) * (size_t)(s->row[0] - s->zero)); }

/// Row `at` of the caller's buffer (`total` floats) for a vector loop that reads `before` floats
/// before it and up to `after` from its start: the row itself when all of that is inside the
/// buffer, else a copy of its `n` floats in `copy` (at the same offsets; what is around it there
/// is read but masked).
INLINE const float *row_at(const float *base, ptrdiff_t at, int n, int before, int after, ptrdiff_t total,
                           float *copy) {
    if (at - before >= 0 && at + after <= total) return base + at;
    memcpy(copy + before, base + at, sizeof(float) * (size_t)n);
    return copy + before;
}

/// Lanes whose position m0 + lane lies in [lo, hi).
#define lanes_in(m0, lo, hi) ((lanes_below((hi) - (m0))) & ~(lanes_below((lo) - (m0))))

// ---- Input: v = B^T d B ------------------------------------------------------------------------

MULTIVERSION
void wino_input(const float *x, int channels, int h, int w, int pad, int ty, int tx,
                float *scratch, float *v) {
    const struct work s = work_of(scratch, ty, tx);
    zero_row(&s);
    const int tiles = ty * tx, last = (tx - 1) & ~(LANES - 1);
    const size_t plane = wino_plane_stride(channels, tiles);
    const ptrdiff_t total = (ptrdiff_t)channels * h * w;
    for (int c = 0; c < channels; c++) {
        // Steps of 16 tiles, the last first: a row's last step writes past the row's end into the
        // next row's first, which comes later. Down the tile rows, the patch's last two rows are
        // the next tile row's first two: each framed row is read once per step.
        for (int t = last; t >= 0; t -= LANES) {
            // Framed columns 2t + j, even and odd, of framed row y + pad (zeros outside the image).
            const int m = 2 * t;
            const vi lo = lanes_in(m, pad, pad + w), hi = lanes_in(m + LANES, pad, pad + w);
            const vi lo2 = lanes_in(m + 2, pad, pad + w), hi2 = lanes_in(m + 2 + LANES, pad, pad + w);
#define FRAMED_ROW(y, slot, d)                                                                            \
    do {                                                                                                  \
        const float *row_ = (y) < 0 || (y) >= h ? s.zero + pad                                            \
            : row_at(x, ((ptrdiff_t)c * h + (y)) * w, w, pad, 2 * last + 2 * LANES + 2 - pad, total, s.row[slot]); \
        const float *p_ = row_ + m - pad;                                                                 \
        vf a_ = keep(ld(p_), lo), b_ = keep(ld(p_ + LANES), hi);                                          \
        vf a2_ = keep(ld(p_ + 2), lo2), b2_ = keep(ld(p_ + 2 + LANES), hi2);                              \
        (d)[0] = EVENS(a_, b_); (d)[1] = ODDS(a_, b_); (d)[2] = EVENS(a2_, b2_); (d)[3] = ODDS(a2_, b2_); \
    } while (0)
            vf d[4][4];
            FRAMED_ROW(-pad, 0, d[2]);
            FRAMED_ROW(1 - pad, 1, d[3]);
            for (int r = 0; r < ty; r++) {
                for (int j = 0; j < 4; j++) { d[0][j] = d[2][j]; d[1][j] = d[3][j]; }
                FRAMED_ROW(2 * r + 2 - pad, 2, d[2]);
                FRAMED_ROW(2 * r + 3 - pad, 3, d[3]);
                // B^T over the rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3), then over the columns.
                vf e[4][4];
                for (int j = 0; j < 4; j++) {
                    e[0][j] = d[0][j] - d[2][j]; e[1][j] = d[1][j] + d[2][j];
                    e[2][j] = d[2][j] - d[1][j]; e[3][j] = d[1][j] - d[3][j];
                }
                float *out = v + (size_t)c * tiles + (size_t)r * tx + t;
                for (int i = 0; i < 4; i++) {
                    float *o = out + (size_t)(4 * i) * plane;
                    st(o, e[i][0] - e[i][2]);
                    st(o + plane, e[i][1] + e[i][2]);
                    st(o + 2 * plane, e[i][2] - e[i][1]);
                    st(o + 3 * plane, e[i][1] - e[i][3]);
                }
            }
#undef FRAMED_ROW
        }
    }
}

MULTIVERSION
void wino_input_grad(const float *dv, int channels, int h, int w, int pad, int ty, int tx,
                     float *scratch, float *dx) {
    const struct work s = work_of(scratch, ty, tx);
    const int tiles = ty * tx, S = s.stride, half = pad >> 1, odd = pad & 1;
    const size_t plane = wino_plane_stride(channels, tiles);
    const ptrdiff_t total = (ptrdiff_t)channels * h * w;
    for (int k = 0; k < 16; k++) memset(s.q[k], 0, sizeof(float) * (size_t)(s.q[1] - s.q[0]));
    for (int c = 0; c < channels; c++) {
        // Each tile's B dv B^T (the adjoint of B^T d B), into q with zeros around the tiles.
        for (int r = 0; r < ty; r++) {
            const float *in = dv + (size_t)c * tiles + (size_t)r * tx;
            for (int t = 0; t < tx; t += LANES) {
                const vi inside = lanes_below(tx - t);
                vf e[4][4];
                for (int i = 0; i < 4; i++) {
                    const float *p = in + (size_t)(4 * i) * plane + t;
                    vf v0 = keep(ld(p), inside), v1 = keep(ld(p + plane), inside);
                    vf v2 = keep(ld(p + 2 * plane), inside), v3 = keep(ld(p + 3 * plane), inside);
                    // The columns: (v0, v1 - v2 + v3, -v0 + v1 + v2, -v3).
                    e[i][0] = v0; e[i][1] = v1 - v2 + v3; e[i][2] = v1 + v2 - v0; e[i][3] = -v3;
                }
                const size_t at = (size_t)(r + 1) * S + 1 + t;
                for (int j = 0; j < 4; j++) {
                    // The rows: (e0, e1 - e2 + e3, -e0 + e1 + e2, -e3).
                    st(s.q[j] + at, e[0][j]);
                    st(s.q[4 + j] + at, e[1][j] - e[2][j] + e[3][j]);
                    st(s.q[8 + j] + at, e[1][j] + e[2][j] - e[0][j]);
                    st(s.q[12 + j] + at, -e[3][j]);
                }
            }
        }
        // Framed (fy, fx) = (2R + a, 2C + b) gets q[i][j] of the tiles (R - i/2, C - j/2) for
        // i = a, a + 2 and j = b, b + 2: four shifted rows of q. Tile (R, C) is at q offset
        // (R + 1) S + C + 1, so from `at` = R S + C + 1 the four are at S, S - 1, 0 and -1.
#define PARITY(b, at)                                                          \
    (ld(s.q[4 * a + (b)] + (at) + S) + ld(s.q[4 * a + (b) + 2] + (at) + S - 1) + \
     ld(s.q[4 * a + 8 + (b)] + (at)) + ld(s.q[4 * a + 8 + (b) + 2] + (at) - 1))
        // Image row y is framed row y + pad, columns pad ..< pad + w: pairs of the two column
        // parities, from C = k + pad/2 (b = 0 then 1, or for an odd pad, b = 1 then 0 at C + 1).
        for (int y = 0; y < h; y++) {
            const int fy = y + pad, a = fy & 1;
            const ptrdiff_t at = ((ptrdiff_t)c * h + y) * w;
            for (int k = 0; k < (w + 1) / 2; k += LANES) {
                const size_t from = (size_t)(fy >> 1) * S + (size_t)(k + half) + 1;
                const vf first = odd ? PARITY(1, from) : PARITY(0, from);
                const vf second = odd ? PARITY(0, from + 1) : PARITY(1, from);
                const vf out[2] = {ZIP_LO(first, second), ZIP_HI(first, second)};
                put(dx + at + 2 * k, out, 2, (size_t)(w - 2 * k < 2 * LANES ? w - 2 * k : 2 * LANES), dx + total);
            }
        }
#undef PARITY
    }
}

// ---- Output: y = A^T m A -----------------------------------------------------------------------

MULTIVERSION
void wino_output(const float *m, int channels, int ho, int wo, int ty, int tx, float *y) {
    const int tiles = ty * tx, last = (tx - 1) & ~(LANES - 1);
    const size_t plane = wino_plane_stride(channels, tiles);
    const ptrdiff_t total = (ptrdiff_t)channels * ho * wo;
    for (int k = 0; k < channels; k++) {
        for (int r = 0; r < ty; r++) {
            const float *q = m + (size_t)k * tiles + (size_t)r * tx;
            // Steps of 16 tiles, the last first: a row's last step writes past the row's end into
            // the next row's first, which comes later.
            for (int t = last; t >= 0; t -= LANES) {
                // A^T over the columns of each patch row i (s0 = m0 + m1 + m2, s1 = m1 - m2 - m3),
                // then over the rows: output row 2r gets s0 + s1 + s2, row 2r + 1 gets s1 - s2 - s3.
                vf s0[4], s1[4];
                for (int i = 0; i < 4; i++) {
                    const float *p = q + (size_t)(4 * i) * plane + t;
                    vf m0 = ld(p), m1 = ld(p + plane), m2 = ld(p + 2 * plane), m3 = ld(p + 3 * plane);
                    s0[i] = m0 + m1 + m2;
                    s1[i] = m1 - m2 - m3;
                }
                for (int a = 0; a < 2 && 2 * r + a < ho; a++) {
                    // Tile (r, t) covers columns 2t, 2t+1 of the row, cut at wo.
                    const vf even = a ? s0[1] - s0[2] - s0[3] : s0[0] + s0[1] + s0[2];
                    const vf odd = a ? s1[1] - s1[2] - s1[3] : s1[0] + s1[1] + s1[2];
                    const ptrdiff_t at = ((ptrdiff_t)k * ho + 2 * r + a) * wo + 2 * t;
                    const vf out[2] = {ZIP_LO(even, odd), ZIP_HI(even, odd)};
                    put(y + at, out, 2, (size_t)(wo - 2 * t < 2 * LANES ? wo - 2 * t : 2 * LANES), y + total);
                }
            }
        }
    }
}

/// The 16 planes of dm at p for 16 tiles, from each tile's 2x2 output gradient yy[row][column]:
/// A over the rows, (y0, y0 + y1, y0 - y1, -y1) for the even column (e) and the odd (o), then over
/// the columns, (e, e + o, e - o, -o).
INLINE void output_grad_tiles(float *p, size_t plane, const vf yy[2][2]) {
    for (int i = 0; i < 4; i++) {
        const vf e = i == 0 ? yy[0][0] : i == 1 ? yy[0][0] + yy[1][0] : i == 2 ? yy[0][0] - yy[1][0] : -yy[1][0];
        const vf o = i == 0 ? yy[0][1] : i == 1 ? yy[0][1] + yy[1][1] : i == 2 ? yy[0][1] - yy[1][1] : -yy[1][1];
        float *q = p + (size_t)(4 * i) * plane;
        st(q, e);
        st(q + plane, e + o);
        st(q + 2 * plane, e - o);
        st(q + 3 * plane, -o);
    }
}

MULTIVERSION
void wino_output_grad(const float *dy, int channels, int ho, int wo, int ty, int tx, float *scratch, float *dm) {
    const struct work s = work_of(scratch, ty, tx);
    zero_row(&s);
    const int tiles = ty * tx, last = (tx - 1) & ~(LANES - 1);
    const size_t plane = wino_plane_stride(channels, tiles);
    const ptrdiff_t total = (ptrdiff_t)channels * ho * wo;
    for (int k = 0; k < channels; k++) {
        for (int r = 0; r < ty; r++) {
            // Rows 2r and 2r + 1 of dy, zeros past the output's edge.
            const float *rows[2];
            for (int a = 0; a < 2; a++)
                rows[a] = 2 * r + a >= ho ? s.zero
                    : row_at(dy, ((ptrdiff_t)k * ho + 2 * r + a) * wo, wo, 0, 2 * last + 2 * LANES, total, s.row[a]);
            float *out = dm + (size_t)k * tiles + (size_t)r * tx;
            for (int t = 0; t < tx; t += LANES) {
                const vi lo = lanes_below(wo - 2 * t), hi = lanes_below(wo - 2 * t - LANES);
                vf yy[2][2];
                for (int a = 0; a < 2; a++) {
                    vf p = keep(ld(rows[a] + 2 * t), lo), q = keep(ld(rows[a] + 2 * t + LANES), hi);
                    yy[a][0] = EVENS(p, q);
                    yy[a][1] = ODDS(p, q);
                }
                output_grad_tiles(out + t, plane, yy);
            }
        }
    }
}

// ---- Transposes ----------------------------------------------------------------------------------

// One 16 x 16 block, by four rounds of exchanges between rows h apart (h = 8, 4, 2, 1): row i takes
// the low halves of each 2h-lane group of rows i and i + h, row i + h the high halves. Written out
// in full, so that the rows stay in registers.
#define SWAP(i, h, LO, HI)                                  \
    do {                                                    \
        vf a_ = x##i, b_ = x##h;                            \
        x##i = __builtin_shufflevector(a_, b_, LO);         \
        x##h = __builtin_shufflevector(a_, b_, HI);         \
    } while (0)
#define H8_LO 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define H8_HI 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define H4_LO 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define H4_HI 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define H2_LO 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define H2_HI 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define H1_LO 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define H1_HI 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31

#define TRANSPOSE16(src, lds, dst, ldd)                                                                   \
    do {                                                                                                  \
        vf x0 = ld((src)), x1 = ld((src) + (lds)), x2 = ld((src) + 2 * (lds)), x3 = ld((src) + 3 * (lds));     \
        vf x4 = ld((src) + 4 * (lds)), x5 = ld((src) + 5 * (lds)), x6 = ld((src) + 6 * (lds));             \
        vf x7 = ld((src) + 7 * (lds)), x8 = ld((src) + 8 * (lds)), x9 = ld((src) + 9 * (lds));             \
        vf x10 = ld((src) + 10 * (lds)), x11 = ld((src) + 11 * (lds)), x12 = ld((src) + 12 * (lds));       \
        vf x13 = ld((src) + 13 * (lds)), x14 = ld((src) + 14 * (lds)), x15 = ld((src) + 15 * (lds));       \
        SWAP(0, 8, H8_LO, H8_HI); SWAP(1, 9, H8_LO, H8_HI); SWAP(2, 10, H8_LO, H8_HI); SWAP(3, 11, H8_LO, H8_HI); \
        SWAP(4, 12, H8_LO, H8_HI); SWAP(5, 13, H8_LO, H8_HI); SWAP(6, 14, H8_LO, H8_HI); SWAP(7, 15, H8_LO, H8_HI); \
        SWAP(0, 4, H4_LO, H4_HI); SWAP(1, 5, H4_LO, H4_HI); SWAP(2, 6, H4_LO, H4_HI); SWAP(3, 7, H4_LO, H4_HI); \
        SWAP(8, 12, H4_LO, H4_HI); SWAP(9, 13, H4_LO, H4_HI); SWAP(10, 14, H4_LO, H4_HI); SWAP(11, 15, H4_LO, H4_HI); \
        SWAP(0, 2, H2_LO, H2_HI); SWAP(1, 3, H2_LO, H2_HI); SWAP(4, 6, H2_LO, H2_HI); SWAP(5, 7, H2_LO, H2_HI); \
        SWAP(8, 10, H2_LO, H2_HI); SWAP(9, 11, H2_LO, H2_HI); SWAP(12, 14, H2_LO, H2_HI); SWAP(13, 15, H2_LO, H2_HI); \
        SWAP(0, 1, H1_LO, H1_HI); SWAP(2, 3, H1_LO, H1_HI); SWAP(4, 5, H1_LO, H1_HI); SWAP(6, 7, H1_LO, H1_HI); \
        SWAP(8, 9, H1_LO, H1_HI); SWAP(10, 11, H1_LO, H1_HI); SWAP(12, 13, H1_LO, H1_HI); SWAP(14, 15, H1_LO, H1_HI); \
        st((dst), x0); st((dst) + (ldd), x1); st((dst) + 2 * (ldd), x2); st((dst) + 3 * (ldd), x3);       \
        st((dst) + 4 * (ldd), x4); st((dst) + 5 * (ldd), x5); st((dst) + 6 * (ldd), x6);                 \
        st((dst) + 7 * (ldd), x7); st((dst) + 8 * (ldd), x8); st((dst) + 9 * (ldd), x9);                 \
        st((dst) + 10 * (ldd), x10); st((dst) + 11 * (ldd), x11); st((dst) + 12 * (ldd), x12);           \
        st((dst) + 13 * (ldd), x13); st((dst) + 14 * (ldd), x14); st((dst) + 15 * (ldd), x15);           \
    } while (0)

// ---- The output transforms fused with MaxPool2d(2, stride 2) ------------------------------------
//
// Tile (r, t) of the output covers rows 2r, 2r + 1 and columns 2t, 2t + 1: exactly window (r, t) of
// a 2x2 max pooling at stride 2. So the output transform can pool at once, and the whole output is
// never stored; tiles cut by an odd edge are not windows (floor mode) and are dropped. A step
// takes 16 tiles (windows) of one tile row, as in `wino_output`.

// With an even output (Ho and Wo even) every tile is a window, and pooled output k*TY*TX + t is
// tile t of channel k: the same flat index as in the planes of m and dm. Then a step takes 16
// consecutive tiles across tile rows and channels, every lane used (a CNN's 12-tile rows fill 12
// of 16 lanes in row steps). Each lane's tile row and column are carried from step to step.

/// Lane l's tile row and column at flat index l (tiles >= 16: within the first channel).
#define FLAT_START(r, c, tx) do {                                                      \
    int r_[LANES], c_[LANES];                                                          \
    for (int l_ = 0; l_ < LANES; l_++) { r_[l_] = l_ / (tx); c_[l_] = l_ % (tx); }     \
    (r) = LOAD(vi, r_);                                                                \
    (c) = LOAD(vi, c_);                                                                \
} while (0)
/// Both, 16 tiles on: into the next row, then into the next channel (at most once each).
#define FLAT_NEXT(r, c, tx, ty) do {                               \
    (c) += LANES % (tx);                                           \
    (r) += LANES / (tx);                                           \
    const vi row_ = (c) >= (tx);                                   \
    (c) -= (tx) & row_;                                            \
    (r) -= row_;                                                   \
    (r) -= (ty) & ((r) >= (ty));                                   \
} while (0)

static int flat_applies(int ho, int wo, int tiles) { return ho % 2 == 0 && wo % 2 == 0 && tiles >= LANES; }

/// 16 tiles (windows) from the 16 planes of m at p: A^T m A as in wino_output, operation for
/// operation (the same bits); each window's four outputs, in torch's scan order, through the
/// epilogue Conv2d applies (+ b when `add`, then ReLU as Swift's max(v, 0): 0 >= v ? 0 : v when
/// `relu`); then the maximum into best and its position into idx (`at`: the top-left positions).
INLINE void pool_tiles(const float *p, size_t plane, const vf *b, int add, int relu, const vi *at, int wo, vf *best, vi *idx) {
    vf s0[4], s1[4];
    for (int i = 0; i < 4; i++) {
        const float *q = p + (size_t)(4 * i) * plane;
        vf m0 = ld(q), m1 = ld(q + plane), m2 = ld(q + 2 * plane), m3 = ld(q + 3 * plane);
        s0[i] = m0 + m1 + m2;
        s1[i] = m1 - m2 - m3;
    }
    vf v[4] = {s0[0] + s0[1] + s0[2], s1[0] + s1[1] + s1[2], s0[1] - s0[2] - s0[3], s1[1] - s1[2] - s1[3]};
    const vf zero = {};
    for (int j = 0; j < 4; j++) {
        if (add) v[j] += *b;
        if (relu) v[j] = keep(v[j], ~(zero >= v[j]));
    }
    window_max(v, at, wo, best, idx);
}

MULTIVERSION
void wino_output_maxpool(const float *m, int channels, int ho, int wo, int ty, int tx, const float *bias,
                         int relu, float *y, int32_t *argmax) {
    const int tiles = ty * tx, ph = ho / 2, pw = wo / 2, last = (pw - 1) & ~(LANES - 1);
    const size_t plane = wino_plane_stride(channels, tiles), outs = (size_t)channels * ph * pw;
    const float *y_end = y + outs;
    const int32_t *a_end = argmax + outs;
    const vf zero = {};
    if (flat_applies(ho, wo, tiles)) {
        vi r, c;
        FLAT_START(r, c, tx);
        for (size_t f = 0; f < outs; f += LANES) {
            // The lanes before `split` are in channel k, the others in k + 1 (tiles >= 16).
            const size_t k = f / tiles, split = (k + 1) * tiles - f;
            const float b0 = bias ? bias[k] : 0.0f, b1 = bias && k + 1 < (size_t)channels ? bias[k + 1] : b0;
            const vi mine = IOTA < (int)split;
            const vf b = (vf)(((vi)(zero + b0) & mine) | ((vi)(zero + b1) & ~mine));
            const vi at = 2 * wo * r + 2 * c;
            vf best;
            vi i;
            pool_tiles(m + f, plane, &b, bias || relu, relu, &at, wo, &best, &i);
            const size_t valid = outs - f < LANES ? outs - f : LANES;
            put(y + f, &best, 1, valid, y_end);
            put(argmax + f, &i, 1, valid, a_end);
            FLAT_NEXT(r, c, tx, ty);
        }
        return;
    }
    for (int k = 0; k < channels; k++) {
        const vf b = zero + (bias ? bias[k] : 0.0f);
        for (int r = 0; r < ph; r++) {
            const float *q = m + (size_t)k * tiles + (size_t)r * tx;
            // The last step first: it writes past the row's end, into the next row, which comes later.
            for (int t = last; t >= 0; t -= LANES) {
                const vi at = 2 * r * wo + 2 * t + 2 * IOTA;  // each window's top-left position
                vf best;
                vi i;
                pool_tiles(q + t, plane, &b, bias || relu, relu, &at, wo, &best, &i);
                const size_t o = ((size_t)k * ph + r) * pw + t, valid = (size_t)(pw - t < LANES ? pw - t : LANES);
                put(y + o, &best, 1, valid, y_end);
                put(argmax + o, &i, 1, valid, a_end);
            }
        }
    }
}

/// bias_grad[k] gets (`first`) or adds the sum of the lanes of `sum`.
INLINE void bias_sum(const vf *sum, float *bias_grad, size_t k, int first) {
    if (!bias_grad) return;
    float total = 0;
    for (int j = 0; j < LANES; j++) total += (*sum)[j];
    bias_grad[k] = first ? total : bias_grad[k] + total;
}

MULTIVERSION
void wino_output_grad_maxpool(const float *dy, const int32_t *argmax, const float *relu_y, int channels, int ho,
                              int wo, int ty, int tx, float *bias_grad, int first, float *dm) {
    const int tiles = ty * tx, ph = ho / 2, pw = wo / 2;
    const size_t plane = wino_plane_stride(channels, tiles), outs = (size_t)channels * ph * pw;
    struct pooled_grad s = {dy, dy + outs, relu_y, relu_y ? relu_y + outs : NULL, argmax, argmax + outs, {{0}}};
    const vf zero = {};
    if (flat_applies(ho, wo, tiles)) {
        vi r, c;
        FLAT_START(r, c, tx);
        vf sum = zero;  // the bias gradient of the current channel, lane by lane
        for (size_t f = 0; f < outs; f += LANES) {
            const vi base = 2 * wo * r + 2 * c;
            vf g, yy[2][2];
            window_grads(&s, f, (int)(outs - f < LANES ? outs - f : LANES), &base, wo, &g, yy);
            output_grad_tiles(dm + f, plane, yy);
            // The lanes before `split` are in channel k, the others in k + 1; channel k ends in
            // this step when split <= 16.
            const size_t k = f / tiles, split = (k + 1) * tiles - f;
            const vi mine = IOTA < (int)(split < LANES ? split : LANES);
            sum += keep(g, mine);
            if (split <= LANES) {
                bias_sum(&sum, bias_grad, k, first);
                sum = keep(g, ~mine);
            }
            FLAT_NEXT(r, c, tx, ty);
        }
        return;
    }
    for (int k = 0; k < channels; k++) {
        vf sum = zero;  // the bias gradient, lane by lane
        for (int r = 0; r < ty; r++) {
            float *out = dm + (size_t)k * tiles + (size_t)r * tx;
            for (int t = 0; t < tx; t += LANES) {
                // Tiles that are not windows (an odd edge's) get zero.
                vf g, yy[2][2] = {{zero, zero}, {zero, zero}};
                if (r < ph && t < pw) {
                    const vi base = 2 * r * wo + 2 * t + 2 * IOTA;
                    window_grads(&s, ((size_t)k * ph + r) * pw + t, pw - t, &base, wo, &g, yy);
                    sum += g;
                }
                output_grad_tiles(out + t, plane, yy);
            }
        }
        bias_sum(&sum, bias_grad, k, first);
    }
}

MULTIVERSION
void wino_transpose_planes(const float *v, int channels, int tiles, float *vt) {
    const size_t plane = wino_plane_stride(channels, tiles), out = (size_t)channels * tiles;
    const int c16 = channels & ~15, t16 = tiles & ~15;
    for (int xi = 0; xi < 16; xi++) {
        const float *src = v + xi * plane;
        float *dst = vt + xi * out;
        for (int c = 0; c < c16; c += 16)
            for (int t = 0; t < t16; t += 16)
                TRANSPOSE16(src + (size_t)c * tiles + t, (size_t)tiles, dst + (size_t)t * channels + c, (size_t)channels);
        // The edges that do not fill a block.
        for (int c = 0; c < channels; c++)
            for (int t = c < c16 ? t16 : 0; t < tiles; t++) dst[(size_t)t * channels + c] = src[(size_t)c * tiles + t];
    }
}
