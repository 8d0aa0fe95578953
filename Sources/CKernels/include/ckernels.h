// Small C kernels for what Swift cannot spell.
#pragma once
#include <stddef.h>

/// Copies `count` floats to `dst` with non-temporal (streaming) stores, then fences. `dst` must be
/// 16-byte aligned. The stores invalidate the lines in every cache without first reading them for
/// ownership: for writing memory that other cores have read and will read again after a barrier.
void ckernels_stream_copy(float *dst, const float *src, size_t count);
