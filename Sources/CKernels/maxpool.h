// MaxPool2d(2, stride 2)'s window arithmetic on 16 windows at a time, shared by its own kernels
// (pooling.c) and by Winograd's output transforms that pool (winograd.c), so that both give the
// bits of Pooling.swift's rule.
#pragma once
#include "vectors.h"
#include <stdint.h>

/// Max pooling's step, lane by lane: where v is larger than m, or NaN where m is not, m and i take
/// v and j (NaN wins, as in torch; the first of equal values stays).
#define TAKE_MAX(m, i, v, j) do {                                  \
    const vf v_ = (v);                                             \
    const vi better_ = (v_ > (m)) | ((v_ != v_) & ((m) == (m)));   \
    (m) = (vf)(((vi)v_ & better_) | ((vi)(m) & ~better_));         \
    (i) = ((j) & better_) | ((i) & ~better_);                      \
} while (0)

/// The maximum of each window's four values v[0..3] (in torch's scan order: (0, 0), (0, 1), (1, 0),
/// (1, 1)) into *best, its position into *idx: `at` (the window's top-left position), + 1, + w or
/// + w + 1 for a plane w wide.
INLINE void window_max(const vf v[4], const vi *at, int w, vf *best, vi *idx) {
    vf m = v[0];
    vi i = *at;
    TAKE_MAX(m, i, v[1], *at + 1);
    TAKE_MAX(m, i, v[2], *at + w);
    TAKE_MAX(m, i, v[3], *at + w + 1);
    *best = m;
    *idx = i;
}

/// The pooled gradient's buffers, read 16 windows at a time (through a copy at their ends).
struct pooled_grad {
    const float *dy, *dy_end, *relu_y, *y_end;
    const int32_t *argmax, *a_end;
    float copy[3][LANES];
};

/// 16 windows' gradients from pooled output o on, lanes from `valid` on zero: g = 0 + dy (times
/// ReLU's derivative at relu_y, when given), into *g, landed at each window's maximum (`base`: the
/// windows' top-left positions in a plane w wide) and zero at its other three positions, into
/// yy[row][column]. MaxPool2d's backward writes them into dx; Winograd's pooled output transform
/// takes them as its tiles' 2x2 output gradients.
INLINE void window_grads(struct pooled_grad *s, size_t o, int valid, const vi *base, int w, vf *g, vf yy[2][2]) {
    const vf one = (vf){} + 1.0f;
    vf v = 0.0f + ld((const float *)readable(s->dy + o, LANES, s->dy_end, s->copy[0]));
    if (s->relu_y) v *= keep(one, ld((const float *)readable(s->relu_y + o, LANES, s->y_end, s->copy[1])) > 0);
    v = keep(v, lanes_below(valid));
    const vi at = LOAD(vi, readable(s->argmax + o, LANES, s->a_end, s->copy[2])) - *base;
    yy[0][0] = keep(v, at == 0);
    yy[0][1] = keep(v, at == 1);
    yy[1][0] = keep(v, at == w);
    yy[1][1] = keep(v, at == w + 1);
    *g = v;
}

