// Small C kernels for what Swift cannot spell.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Copies `count` floats to `dst` with non-temporal (streaming) stores, then fences. `dst` must be
/// 16-byte aligned. The stores invalidate the lines in every cache without first reading them for
/// ownership: for writing memory that other cores have read and will read again after a barrier.
void ckernels_stream_copy(float *dst, const float *src, size_t count);

/// bfloat16 <-> float: round to nearest even (NaN stays NaN), and exact widening.
void ckernels_f32_to_bf16(uint16_t *dst, const float *src, size_t count);
void ckernels_bf16_to_f32(float *dst, const uint16_t *src, size_t count);

/// Atomics on memory that processes share (a counter in an MPI shared window): an add that
/// publishes the caller's earlier writes, and a load that sees them.
void ckernels_atomic_add_release(int64_t *p, int64_t v);
int64_t ckernels_atomic_load_acquire(const int64_t *p);

#include "winograd.h"

/// MaxPool2d(2, stride 2) over `planes` planes of (h, w) into (ho, wo): y the maxima, argmax each
/// one's position within its plane (the first of equal values; NaN wins).
void ckernels_maxpool2x2(const float *x, size_t planes, int h, int w, int ho, int wo, float *y, int32_t *argmax);
/// Its adjoint: dx (planes of (h, w)) = dy at each window's argmax, zero elsewhere; with `relu_y`
/// (the pooled output of a ReLU), times ReLU's derivative there.
void ckernels_maxpool2x2_backward(const float *dy, const int32_t *argmax, size_t planes, int h, int w, int ho, int wo,
                                  const float *relu_y, float *dx);

/// mask[i] = 1 when CounterRandom.unitFloat(key, i) >= p, else 0, for i < count.
void ckernels_dropout_mask(uint8_t *mask, uint64_t key, size_t count, float p);
/// dst[i] = mask[i] ? src[i] * scale : 0 (dst may be src).
void ckernels_apply_mask(float *dst, const float *src, const uint8_t *mask, size_t count, float scale);

/// Adam's update of `count` values (Optim's Adam.swift, bit for bit): g' = g + l2 p;
/// m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g' g'; p = p decay - step_size m / (sqrt(v) / bc2_sqrt + eps).
/// g may not overlap p, m or v.
void ckernels_adam(float *p, const float *g, float *m, float *v, size_t count, float b1, float b2, float l2,
                   float decay, float step_size, float bc2_sqrt, float eps);

/// Conv2d's epilogue over one sample's output (channels x pixels): y = y + bias[c] (0 when `bias`
/// is NULL), then ReLU (Swift's max(v, 0)) when `relu`.
void ckernels_bias_relu(float *y, size_t channels, size_t pixels, const float *bias, int relu);
/// Conv2d's backward pass over one sample's output gradient g: with `y` (a ReLU's output), g *= (y > 0 ?
/// 1 : 0); then `bias_grad[c]`, when given, gets (`first`) or adds the sum of row c (16 running sums,
/// totalled in lane order from -0, then the remaining values).
void ckernels_relu_grad_bias_sums(float *g, const float *y, size_t channels, size_t pixels, float *bias_grad, int first);
