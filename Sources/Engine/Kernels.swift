import CBLAS
import CKernels

/// The matrix and elementwise kernels of the engine. Shapes are in the comments, row-major,
/// llm.c style. GEMM is OpenBLAS; the rest are plain loops the compiler vectorizes, or C (CKernels)
/// where it would not.
public enum Kernels {
    /// dst[0..<count] = src[0..<count] with streaming (non-temporal) stores; `dst` 16-byte aligned.
    /// The stores take the lines from every cache without reading them first: cheaper than normal
    /// stores to memory that other cores hold, when the cores run far apart (see SharedMemoryReduce).
    @inline(__always)
    public static func streamingCopy(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int) {
        ckernels_stream_copy(dst, src, count)
    }

    /// bfloat16 (round to nearest even) and back.
    public static func toBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        ckernels_f32_to_bf16(dst, src, count)
    }
    public static func fromBF16(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        ckernels_bf16_to_f32(dst, src, count)
    }

    /// A counter shared between processes: add (publishing earlier writes) and load (seeing them).
    public static func atomicAddRelease(_ p: UnsafeMutablePointer<Int64>, _ v: Int64) { ckernels_atomic_add_release(p, v) }
    public static func atomicLoadAcquire(_ p: UnsafePointer<Int64>) -> Int64 { ckernels_atomic_load_acquire(p) }

    /// MaxPool2d(2, stride 2) over `planes` planes (h, w) -> (ho, wo): the maxima and their positions
    /// within the plane (the first of equal values; NaN wins, as in torch).
    public static func maxPool2x2(_ x: UnsafePointer<Float>, planes: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                                  _ y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>) {
        ckernels_maxpool2x2(x, planes, Int32(height), Int32(width), Int32(outHeight), Int32(outWidth), y, argmax)
    }

    /// maxPool2x2's adjoint: dx = dy at each window's argmax, zero elsewhere (written in one pass);
    /// with `reluOutput` (a ReLU's pooled output y), times ReLU's derivative (y > 0 ? 1 : 0) there.
    public static func maxPool2x2Backward(_ dy: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, planes: Int, height: Int,
                                          width: Int, outHeight: Int, outWidth: Int, reluOutput: UnsafePointer<Float>? = nil,
                                          _ dx: UnsafeMutablePointer<Float>) {
        ckernels_maxpool2x2_backward(dy, argmax, planes, Int32(height), Int32(width), Int32(outHeight), Int32(outWidth),
                                     reluOutput, dx)
    }

    /// Conv2d's epilogue over one sample (channels x pixels): + bias (nil: 0), then ReLU when `relu`.
    public static func biasReLU(_ y: UnsafeMutablePointer<Float>, channels: Int, pixels: Int, bias: UnsafePointer<Float>?, relu: Bool) {
        ckernels_bias_relu(y, channels, pixels, bias, relu ? 1 : 0)
    }

    /// Conv2d's backward pass over one sample's output gradient: times ReLU's derivative at
    /// `reluOutput` (nil: none), then the bias gradient's row sums (nil: none), written when `first`,
    /// else added.
    public static func reluGradientBiasSums(_ g: UnsafeMutablePointer<Float>, reluOutput: UnsafePointer<Float>?, channels: Int,
                                            pixels: Int, biasGrad: UnsafeMutablePointer<Float>?, first: Bool) {
        ckernels_relu_grad_bias_sums(g, reluOutput, channels, pixels, biasGrad, first ? 1 : 0)
    }

    /// Adam's update over `count` values (`ckernels_adam`): the moments m and v, then p.
    public static func adam(_ p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
                            v: UnsafeMutablePointer<Float>, count: Int, beta1: Float, beta2: Float, l2: Float, decay: Float,
                            stepSize: Float, bc2Sqrt: Float, eps: Float) {
        ckernels_adam(p, g, m, v, count, beta1, beta2, l2, decay, stepSize, bc2Sqrt, eps)
    }

    /// dst[i] = mask[i] != 0 ? src[i] * scale : 0 for i < count (Dropout; dst may be src).
    public static func applyMask(_ mask: UnsafePointer<UInt8>, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                                 count: Int, scale: Float) {
        ckernels_apply_mask(dst, src, mask, count, scale)
    }

    /// C[M,N] = alpha * op(A) * op(B) + beta * C, row-major.
    @inline(__always)
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            // BLAS may leave C untouched for k == 0; the math says C = beta * C.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// db[cols] = (or += when `accumulate`) the sum over rows of dy[rows, cols] (rows `rowStride`
    /// apart, default `cols`); the first row initializes db, so no separate zeroing pass is needed.
    @inlinable
    public static func columnSums(_ dy: UnsafePointer<Float>, rows: Int, cols: Int, rowStride: Int? = nil,
                                  into db: UnsafeMutablePointer<Float>, accumulate: Bool) {
        guard rows > 0 else {
            if !accumulate { db.update(repeating: 0, count: cols) }
            return
        }
        if accumulate {
            for c in 0..<cols { db[c] += dy[c] }
        } else {
            db.update(from: dy, count: cols)
        }
        let step = rowStride ?? cols
        for r in 1..<rows {
            let row = dy + r * step
            for c in 0..<cols { db[c] += row[c] }
        }
    }
}

/// OpenBLAS's runtime settings. The core type can only be chosen before the library loads (see
/// `BLASEnvironment` in the CLI); the thread count can change at any time.
public enum BLAS {
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    public static var threads: Int { Int(openblas_get_num_threads()) }
    public static var coreName: String { String(cString: openblas_get_corename()) }
}

/// One matrix product C[m, n] = op(A)[m, k] op(B)[k, n], as a layer makes it in a training step,
/// `repeats` times (Conv2d: once per sample).
public struct GEMMShape: Equatable, Sendable {
    public var m: Int, n: Int, k: Int
    public var transA: Bool, transB: Bool
    public var repeats: Int
    public init(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, repeats: Int = 1) {
        self.m = m; self.n = n; self.k = k
        self.transA = transA; self.transB = transB
        self.repeats = repeats
    }
    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(repeats) }
}
