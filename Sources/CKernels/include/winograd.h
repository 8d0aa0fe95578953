// Winograd's minimal filtering F(2x2, 3x3) for a 3x3 convolution with stride 1: the four
// transforms and their adjoints, one sample (or one kernel set) at a time. Conv2d runs the 16
// channel GEMMs between them (see Conv2d.swift).
//
// Tiles: the output (Ho, Wo) is cut into TY x TX tiles of 2x2 (TY = ceil(Ho/2), TX = ceil(Wo/2));
// tile t = ty*TX + tx reads the 4x4 input patch at (2ty - P, 2tx - P), zeros outside the image.
// Transformed values are planes indexed xi = 4i + j (the 4x4 transform position), each plane a
// row-major matrix: kernels u[xi][co][ci], inputs v[xi][c][t], products m[xi][co][t].
#pragma once
#include <stddef.h>

/// u[xi][co][ci] = (G g G^T)[i][j] for every 3x3 kernel g = w[co][ci]; u[xi][ci][co] when
/// `transposed` (for dV = U^T dM as a plain product).
void wino_kernels(const float *w, int cout, int cin, int transposed, float *u);
/// dw[co][ci] = (or += when `accumulate`) G^T du G, the adjoint of `wino_kernels`, from a sum
/// kept in double (rounded to float once, at the end).
void wino_kernels_grad(const double *du, int cout, int cin, float *dw, int accumulate);
/// sum[i] = (first) or += du[i]: the samples' dU, summed in double.
void wino_sum(double *sum, const float *du, size_t count, int first);

/// The distance between two planes of v, dv, m or dm (`channels` x `tiles` each): the plane, then
/// at least 16 floats of slack, which the transforms may write and read.
size_t wino_plane_stride(int channels, int tiles);
/// The floats of `scratch` that the four transforms below need.
size_t wino_work_floats(int ty, int tx);

/// v[xi][c][t] = (B^T d B)[i][j] for the 4x4 patch d of tile t in channel c of x (c, h, w),
/// padded by `pad`. Planes `wino_plane_stride(channels, TY TX)` apart.
void wino_input(const float *x, int channels, int h, int w, int pad, int ty, int tx,
                float *scratch, float *v);
/// dx (c, h, w) = the adjoint of `wino_input` applied to dv (overlapping patches add).
void wino_input_grad(const float *dv, int channels, int h, int w, int pad, int ty, int tx,
                     float *scratch, float *dx);

/// y (k, ho, wo) = (A^T m A) for every output channel and tile, cut to the output's size.
void wino_output(const float *m, int channels, int ho, int wo, int ty, int tx, float *scratch, float *y);
/// dm[xi][k][t] = (A dy A^T)[i][j], dy's tile taken as zero outside (ho, wo): the adjoint of
/// `wino_output`.
void wino_output_grad(const float *dy, int channels, int ho, int wo, int ty, int tx, float *scratch, float *dm);

/// vt[xi][t][c] = v[xi][c][t]: each plane of v (as `wino_input` lays them out) transposed, the
/// planes packed (channels x tiles apart). Then dU = dM V^T is a plain product, which OpenBLAS's
/// small-matrix kernels take (the transposed form goes through its packing path, 30% slower).
void wino_transpose_planes(const float *v, int channels, int tiles, float *vt);
