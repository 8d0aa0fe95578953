import CKernels

/// Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2016) for a Conv2d with a 3x3 kernel
/// and stride 1: 16 multiplications per 2x2 output tile and channel pair instead of 36, so each of
/// the three GEMMs of a training step does 2.25x fewer flops than im2col's.
///
/// The output is cut into 2x2 tiles (`winograd.h`). With U = G g G^T for each kernel and
/// V = B^T d B for each tile's 4x4 input patch, for each of the 16 positions xi of the transform:
///
///     forward:   M_xi = U_xi (Cout x Cin) V_xi (Cin x tiles),    y = A^T M A
///     backward:  dM = A dy A^T,   dU_xi = sum of dM_xi V_xi^T,   dW = G^T dU G
///                dV_xi = U_xi^T dM_xi,                           dx = the adjoint of V's transform
///
/// Backward is the exact adjoint of forward. One sample at a time: its V and M (16 x 32 x 144 and
/// 16 x 64 x 144 floats for the CNN preset's second convolution) stay in L2, where these GEMMs run
/// at full speed. The weight gradient sums each sample's dU in double, in sample order, and
/// transforms the sum once. Against float64, the errors are im2col's (NumpyReferenceTests).
public struct Winograd3x3 {
    public let inChannels: Int, outChannels: Int
    public let height: Int, width: Int, padding: Int
    public let outHeight: Int, outWidth: Int
    /// Tiles per sample: rows, columns, and both.
    public let tileRows: Int, tileColumns: Int, tiles: Int

    /// Worth it when the channel GEMMs are not tiny (a first layer on 1 or 3 channels is not).
    public static func applies(inChannels: Int, outChannels: Int, kernel: Int, stride: Int) -> Bool {
        kernel == 3 && stride == 1 && inChannels >= 8 && outChannels >= 8
    }

    public init(inChannels: Int, outChannels: Int, height: Int, width: Int, padding: Int) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.height = height
        self.width = width
        self.padding = padding
        outHeight = height + 2 * padding - 2
        outWidth = width + 2 * padding - 2
        tileRows = (outHeight + 1) / 2
        tileColumns = (outWidth + 1) / 2
        tiles = tileRows * tileColumns
    }

    /// Plane strides: U and dU (Cout x Cin), V and dV (Cin x tiles, with slack), M and dM (Cout x
    /// tiles, with slack), V^T (tiles x Cin).
    private var kernelPlane: Int { outChannels * inChannels }
    private var inputPlane: Int { wino_plane_stride(Int32(inChannels), Int32(tiles)) }
    private var productPlane: Int { wino_plane_stride(Int32(outChannels), Int32(tiles)) }
    private var transposedPlane: Int { tiles * inChannels }
    /// Scratch: U, one sample's dU, the samples' dU summed in double, V (or dV), M (or dM), V^T, and
    /// the transforms' own buffers.
    public var scratchFloats: Int {
        16 * (4 * kernelPlane + inputPlane + productPlane + transposedPlane)
            + wino_work_floats(Int32(tileRows), Int32(tileColumns))
    }

    private struct Scratch {
        let u, du, v, m, vt, work: UnsafeMutablePointer<Float>
        let duSum: UnsafeMutablePointer<Double>
    }
    private func layout(_ scratch: UnsafeMutablePointer<Float>) -> Scratch {
        let du = scratch + 16 * kernelPlane, sum = du + 16 * kernelPlane, v = sum + 32 * kernelPlane
        let m = v + 16 * inputPlane, vt = m + 16 * productPlane
        return Scratch(u: scratch, du: du, v: v, m: m, vt: vt, work: vt + 16 * transposedPlane,
                       duSum: UnsafeMutableRawPointer(sum).bindMemory(to: Double.self, capacity: 16 * kernelPlane))
    }

    /// The GEMMs of one training step at `batch` samples: 16 of each kind per sample.
    public func gemms(batch: Int, inputGrad: Bool) -> [GEMMShape] {
        [GEMMShape(m: outChannels, n: tiles, k: inChannels, transA: false, transB: false, repeats: 16 * batch),
         GEMMShape(m: outChannels, n: inChannels, k: tiles, transA: false, transB: false, repeats: 16 * batch)]
            + (inputGrad ? [GEMMShape(m: inChannels, n: tiles, k: outChannels, transA: false, transB: false, repeats: 16 * batch)] : [])
    }

    /// The 16 products C_xi (m x n) = A_xi (m x k) B_xi (k x n), one per transform position, each
    /// operand a stack of 16 row-major planes, `aPlane`, `bPlane` and `cPlane` floats apart.
    @inline(__always)
    private func planeProducts(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, aPlane: Int,
                               b: UnsafePointer<Float>, bPlane: Int, c: UnsafeMutablePointer<Float>, cPlane: Int) {
        for xi in 0..<16 {
            Kernels.gemm(transA: false, transB: false, m: m, n: n, k: k, a: a + xi * aPlane, lda: k,
                         b: b + xi * bPlane, ldb: n, beta: 0, c: c + xi * cPlane, ldc: n)
        }
    }

    /// Each sample's (Cout, Ho, Wo) cross-correlation of x with `weight`, without bias, at
    /// y + sample * outputStride (0: every sample in the same place). `finish(sample, output)` gets
    /// each as soon as it is written, while it is in cache (the layer's bias and activation).
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, outputStride: Int, batch: Int,
                        weight: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                        finish: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let s = layout(scratch)
        wino_kernels(weight, Int32(outChannels), Int32(inChannels), 0, s.u)
        for sample in 0..<batch {
            products(x, sample: sample, s)
            let ys = y + sample * outputStride
            wino_output(s.m, Int32(outChannels), Int32(outHeight), Int32(outWidth), Int32(tileRows), Int32(tileColumns), ys)
            finish(sample, ys)
        }
    }

    /// Forward followed by the layer's epilogue (+ `bias`, then ReLU when `relu`) and MaxPool2d(2,
    /// stride 2), which pools each 2x2 output tile as the output transform makes it: sample s's
    /// pooled output (Cout, Ho/2, Wo/2) at pooled + s * that count, its argmax (positions within
    /// the (Ho, Wo) plane, as MaxPool2d's kernel) at argmax + the same. The output is never stored.
    public func forward(_ x: UnsafePointer<Float>, pooled: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>,
                        batch: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, relu: Bool,
                        scratch: UnsafeMutablePointer<Float>) {
        let s = layout(scratch)
        wino_kernels(weight, Int32(outChannels), Int32(inChannels), 0, s.u)
        let count = pooledCount
        for sample in 0..<batch {
            products(x, sample: sample, s)
            wino_output_maxpool(s.m, Int32(outChannels), Int32(outHeight), Int32(outWidth), Int32(tileRows),
                                Int32(tileColumns), bias, relu ? 1 : 0, pooled + sample * count, argmax + sample * count)
        }
    }

    /// Floats per sample of a fused 2x2 pooling's output.
    private var pooledCount: Int { outChannels * (outHeight / 2) * (outWidth / 2) }

    /// M_xi (Cout, tiles) = U_xi (Cout, Cin) V_xi (Cin, tiles) for one sample, U in the scratch.
    @inline(__always)
    private func products(_ x: UnsafePointer<Float>, sample: Int, _ s: Scratch) {
        transformInput(x + sample * inChannels * height * width, into: s)
        planeProducts(m: outChannels, n: tiles, k: inChannels, a: s.u, aPlane: kernelPlane,
                      b: s.v, bPlane: inputPlane, c: s.m, cPlane: productPlane)
    }

    /// Before `backward` computes dx, once per backward pass (every shard's call uses it): U^T in
    /// the scratch, as Cin x Cout planes, so that dV = U^T dM is a plain product (no transposed packing).
    public func prepareInputGradient(weight: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        wino_kernels(weight, Int32(outChannels), Int32(inChannels), 1, layout(scratch).u)
    }

    /// Where backward takes a sample's output gradient from.
    public enum OutputGradient {
        /// The gradient of the output (Cout, Ho, Wo).
        case dense(UnsafePointer<Float>)
        /// The gradient of a fused 2x2 max pooling's output (`forward(_:pooled:...)`), with its
        /// argmax and, under ReLU, its output (whose derivative applies); the dense gradient is
        /// never written. `biasGrad` (nil: none) gets, when `first`, or adds the sample's bias
        /// gradient.
        case pooled(UnsafePointer<Float>, argmax: UnsafePointer<Int32>, reluOutput: UnsafePointer<Float>?,
                    biasGrad: UnsafeMutablePointer<Float>?, first: Bool)
    }

    /// Backward over `samples` (indices into the batch, in the order their dU is summed). `dy(sample)`
    /// gives each sample's output gradient, made just before the transform reads it, in cache (a
    /// dense one through the activation's derivative). `weightGrad` gets (or, with `accumulate`, adds)
    /// G^T (sum of dU) G; `dx`, when given (after `prepareInputGradient`), gets each sample's input
    /// gradient. With no samples the weight gradient is written as zero (or left, with `accumulate`).
    public func backward<Samples: Sequence<Int>>(x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
                                                 samples: Samples, weightGrad: UnsafeMutablePointer<Float>,
                                                 accumulate: Bool, scratch: UnsafeMutablePointer<Float>,
                                                 dy: (Int) -> OutputGradient) {
        let s = layout(scratch)
        let inCount = inChannels * height * width
        var first = true
        for sample in samples {
            switch dy(sample) {
            case .dense(let g):
                wino_output_grad(g, Int32(outChannels), Int32(outHeight), Int32(outWidth),
                                 Int32(tileRows), Int32(tileColumns), s.work, s.m)
            case let .pooled(g, argmax, reluOutput, biasGrad, first):
                wino_output_grad_maxpool(g, argmax, reluOutput, Int32(outChannels), Int32(outHeight), Int32(outWidth),
                                         Int32(tileRows), Int32(tileColumns), biasGrad, first ? 1 : 0, s.m)
            }
            transformInput(x + sample * inCount, into: s)
            wino_transpose_planes(s.v, Int32(inChannels), Int32(tiles), s.vt)
            // dU_xi (Cout, Cin) = dM_xi (Cout, tiles) V_xi^T, summed over the samples in double
            planeProducts(m: outChannels, n: inChannels, k: tiles, a: s.m, aPlane: productPlane,
                          b: s.vt, bPlane: transposedPlane, c: s.du, cPlane: kernelPlane)
            wino_sum(s.duSum, s.du, 16 * kernelPlane, first ? 1 : 0)
            first = false
            guard let dx else { continue }
            // dV_xi (Cin, tiles) = U_xi^T (Cin, Cout) dM_xi, over V (no longer needed)
            planeProducts(m: inChannels, n: tiles, k: outChannels, a: s.u, aPlane: kernelPlane,
                          b: s.m, bPlane: productPlane, c: s.v, cPlane: inputPlane)
            wino_input_grad(s.v, Int32(inChannels), Int32(height), Int32(width), Int32(padding),
                            Int32(tileRows), Int32(tileColumns), s.work, dx + sample * inCount)
        }
        if first {
            if !accumulate { weightGrad.update(repeating: 0, count: 9 * outChannels * inChannels) }
        } else {
            wino_kernels_grad(s.duSum, Int32(outChannels), Int32(inChannels), weightGrad, accumulate ? 1 : 0)
        }
    }

    private func transformInput(_ xs: UnsafePointer<Float>, into s: Scratch) {
        wino_input(xs, Int32(inChannels), Int32(height), Int32(width), Int32(padding),
                   Int32(tileRows), Int32(tileColumns), s.work, s.v)
    }
}
