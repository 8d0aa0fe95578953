// Winograd's minimal filtering F(2x2, 3x3) for a 3x3 convolution with stride 1: the four
// transforms and their adjoints, and the output pair fused with a 2x2 max pooling, one sample (or
// one kernel set) at a time. Conv2d runs the 16 channel GEMMs between them (see Conv2d.swift).
//
// Tiles: the output (Ho, Wo) is cut into TY x TX tiles of 2x2 (TY = ceil(Ho/2), TX = ceil(Wo/2));
// tile t = ty*TX + tx reads the 4x4 input patch at (2ty - P, 2tx - P), zeros outside the image.
// Transformed values are planes indexed xi = 4i + j (the 4x4 transform position), each plane a
// row-major matrix: kernels u[xi][co][ci], inputs v[xi][c][t], products m[xi][co][t].
#pragma once
#include <stddef.h>
#include <stdint.h>

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
/// The floats of `scratch` that the transforms below which take one need.
size_t wino_work_floats(int ty, int tx);

/// v[xi][c][t] = (B^T d B)[i][j] for the 4x4 patch d of tile t in channel c of x (c, h, w),
/// padded by `pad`. Planes `wino_plane_stride(channels, TY TX)` apart.
void wino_input(const float *x, int channels, int h, int w, int pad, int ty, int tx,
                float *scratch, float *v);
/// dx (c, h, w) = the adjoint of `wino_input` applied to dv (overlapping patches add).
void wino_input_grad(const float *dv, int channels, int h, int w, int pad, int ty, int tx,
                     float *scratch, float *dx);

/// y (k, ho, wo) = (A^T m A) for every output channel and tile, cut to the output's size.
void wino_output(const float *m, int channels, int ho, int wo, int ty, int tx, float *y);
/// dm[xi][k][t] = (A dy A^T)[i][j], dy's tile taken as zero outside (ho, wo): the adjoint of
/// `wino_output`.
void wino_output_grad(const float *dy, int channels, int ho, int wo, int ty, int tx, float *scratch, float *dm);

/// `wino_output` followed by Conv2d's epilogue and MaxPool2d(2, stride 2), without storing the
/// output: y (k, ho/2, wo/2) gets each 2x2 tile's maximum (the first of equal values, NaN wins) and
/// argmax its position within the (ho, wo) plane, as MaxPool2d's kernel gives them. The epilogue:
/// + bias[k] (when `bias` or `relu`; 0 without a bias), then ReLU (max(v, 0)) when `relu`. The same
/// bits as the three passes.
void wino_output_maxpool(const float *m, int channels, int ho, int wo, int ty, int tx, const float *bias,
                         int relu, float *y, int32_t *argmax);
/// The adjoint, from the pooled gradient: `wino_output_grad` of the dense gradient that MaxPool2d's
/// backward would write (dy at each argmax, times ReLU's derivative at the pooled output `relu_y`
/// when given, zero elsewhere), with the same bits, without writing it. `bias_grad[k]`, when given,
/// gets (`first`) or adds the channel's sum of that gradient (summed in another order than
/// Conv2d's pass over the dense gradient).
void wino_output_grad_maxpool(const float *dy, const int32_t *argmax, const float *relu_y, int channels, int ho,
                              int wo, int ty, int tx, float *bias_grad, int first, float *dm);

/// vt[xi][t][c] = v[xi][c][t]: each plane of v (as `wino_input` lays them out) transposed, the
/// planes packed (channels x tiles apart). Then dU = dM V^T is a plain product, which OpenBLAS's
/// small-matrix kernels take (the transposed form goes through its packing path, 30% slower).
void wino_transpose_planes(const float *v, int channels, int tiles, float *vt);
