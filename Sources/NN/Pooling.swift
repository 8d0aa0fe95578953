import Engine

/// (C, (H - K) / S + 1, (W - K) / S + 1) for a K x K window at stride S over (C, H, W) (no padding,
/// floor mode), or nil when the window does not fit.
func pooledShape(_ input: Shape, kernel: Int, stride: Int) -> Shape? {
    guard input.rank == 3, kernel > 0, stride > 0, input.dims[1] >= kernel, input.dims[2] >= kernel else { return nil }
    return Shape(input.dims[0], (input.dims[1] - kernel) / stride + 1, (input.dims[2] - kernel) / stride + 1)
}

/// torch.nn.MaxPool2d(kernel_size=K, stride=S) (no padding, floor mode): (C, H, W) to
/// (C, (H - K) / S + 1, (W - K) / S + 1). Forward keeps the position of each window's maximum (the
/// first, as torch) in workspace; backward sends each output gradient there.
public final class MaxPool2d: Layer {
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        graph.add("MaxPool", [x], [("kernel_shape", .ints([kernel, kernel])), ("strides", .ints([stride, stride]))])
    }

    public let kernel: Int, stride: Int
    public let inputShape: Shape
    public let outputShape: Shape
    private var argmaxOffset = 0
    private var argmax: UnsafeMutablePointer<Int32>!
    /// Run by the layer before it (`FusesMaxPool`), one sample at a time: the chain does not call
    /// this layer's forward and backward (set by the chain).
    public var fusedIntoPrevious = false
    /// The common case, with a kernel of its own (C): a 2x2 window at stride 2.
    public var isTwoByTwo: Bool { kernel == 2 && stride == 2 }

    public init?(input: Shape, kernel: Int, stride: Int? = nil) {
        guard let output = pooledShape(input, kernel: kernel, stride: stride ?? kernel) else { return nil }
        self.kernel = kernel
        self.stride = stride ?? kernel
        inputShape = input
        outputShape = output
    }

    public var typeName: String { "MaxPool2d(kernel_size=\(kernel), stride=\(stride))" }

    public func reserve(in store: ParameterStore, prefix: String, maxBatch: Int) {
        argmaxOffset = store.reserveWorkspace(maxBatch * outputShape.count)
    }

    public func bind(to store: ParameterStore) {
        argmax = UnsafeMutableRawPointer(store.workspacePointer(argmaxOffset)).assumingMemoryBound(to: Int32.self)
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        let (h, w) = (inputShape.dims[1], inputShape.dims[2])
        let (ho, wo) = (outputShape.dims[1], outputShape.dims[2])
        let planes = batch * inputShape.dims[0]
        if isTwoByTwo {  // the common case, in C: the same rule, vectorized
            return Kernels.maxPool2x2(x, planes: planes, height: h, width: w, outHeight: ho, outWidth: wo, y, argmax: argmax)
        }
        for plane in 0..<planes {
            let xp = x + plane * h * w
            let yp = y + plane * ho * wo
            let ap = argmax + plane * ho * wo
            // Window offset by offset, each over a whole output row: the window's first element
            // starts the row, and every other one replaces it where it is larger (selects, not
            // branches: a window's maximum is unpredictable). NaN wins, as in torch.
            for oh in 0..<ho {
                let ym = yp + oh * wo, am = ap + oh * wo
                for ki in 0..<kernel {
                    for kj in 0..<kernel {
                        let start = (oh * stride + ki) * w + kj
                        if ki == 0 && kj == 0 {
                            for ow in 0..<wo { ym[ow] = xp[start + ow * stride]; am[ow] = Int32(start + ow * stride) }
                            continue
                        }
                        for ow in 0..<wo {
                            let v = xp[start + ow * stride], m = ym[ow]
                            let better = v > m || (v != v && m == m)
                            ym[ow] = better ? v : m
                            am[ow] = better ? Int32(start + ow * stride) : am[ow]
                        }
                    }
                }
            }
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        let inPlane = inputShape.dims[1] * inputShape.dims[2], outPlane = outputShape.dims[1] * outputShape.dims[2]
        if isTwoByTwo {  // windows that do not overlap: one pass, no zeroing first
            return Kernels.maxPool2x2Backward(dy, argmax: argmax, planes: batch * inputShape.dims[0],
                                              height: inputShape.dims[1], width: inputShape.dims[2],
                                              outHeight: outputShape.dims[1], outWidth: outputShape.dims[2], dx)
        }
        dx.update(repeating: 0, count: batch * inputShape.count)
        for plane in 0..<(batch * inputShape.dims[0]) {
            let dxp = dx + plane * inPlane, dyp = dy + plane * outPlane, ap = argmax + plane * outPlane
            for o in 0..<outPlane { dxp[Int(ap[o])] += dyp[o] }
        }
    }

    /// Where sample `s`'s argmax lives, for a layer that fused this pooling and computes it itself
    /// (Conv2d under Winograd): the positions within the input plane, as `forward` writes them.
    public func argmax(ofSample s: Int) -> UnsafeMutablePointer<Int32> { argmax + s * outputShape.count }

    /// One sample of a 2x2 pooling (`isTwoByTwo`), for the layer that fused it: sample `s`'s input
    /// `x` (C, H, W) to its output `y`, with its argmax.
    public func forward(sample s: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        Kernels.maxPool2x2(x, planes: inputShape.dims[0], height: inputShape.dims[1], width: inputShape.dims[2],
                           outHeight: outputShape.dims[1], outWidth: outputShape.dims[2], y,
                           argmax: argmax + s * outputShape.count)
    }

    /// Its backward for sample `s`: dx (C, H, W) = dy at each window's argmax, zero elsewhere. With
    /// the ReLU fused before the pooling (`reluOutput`: the pooled output y), each landed gradient
    /// times ReLU's derivative (y > 0 ? 1 : 0): the gradient of the ReLU's input, since 0 * f' is 0
    /// at every other position.
    public func backward(sample s: Int, dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         reluOutput: UnsafePointer<Float>? = nil) {
        Kernels.maxPool2x2Backward(dy, argmax: argmax + s * outputShape.count, planes: inputShape.dims[0],
                                   height: inputShape.dims[1], width: inputShape.dims[2], outHeight: outputShape.dims[1],
                                   outWidth: outputShape.dims[2], reluOutput: reluOutput, dx)
    }
}

/// torch.nn.AvgPool2d(kernel_size=K, stride=S) (no padding, floor mode): the mean of each window.
public final class AvgPool2d: Layer {
    /// No padding, so ONNX's count_include_pad makes no difference.
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        graph.add("AveragePool", [x], [("kernel_shape", .ints([kernel, kernel])), ("strides", .ints([stride, stride]))])
    }

    public let kernel: Int, stride: Int
    public let inputShape: Shape
    public let outputShape: Shape

    public init?(input: Shape, kernel: Int, stride: Int? = nil) {
        guard let output = pooledShape(input, kernel: kernel, stride: stride ?? kernel) else { return nil }
        self.kernel = kernel
        self.stride = stride ?? kernel
        inputShape = input
        outputShape = output
    }

    public var typeName: String { "AvgPool2d(kernel_size=\(kernel), stride=\(stride))" }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        let (h, w) = (inputShape.dims[1], inputShape.dims[2])
        let (ho, wo) = (outputShape.dims[1], outputShape.dims[2])
        let scale = 1 / Float(kernel * kernel)
        for plane in 0..<(batch * inputShape.dims[0]) {
            let xp = x + plane * h * w, yp = y + plane * ho * wo
            for oh in 0..<ho {
                for ow in 0..<wo {
                    var sum: Float = 0
                    for ki in 0..<kernel {
                        let row = xp + (oh * stride + ki) * w + ow * stride
                        for kj in 0..<kernel { sum += row[kj] }
                    }
                    yp[oh * wo + ow] = sum * scale
                }
            }
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        let (h, w) = (inputShape.dims[1], inputShape.dims[2])
        let (ho, wo) = (outputShape.dims[1], outputShape.dims[2])
        let scale = 1 / Float(kernel * kernel)
        dx.update(repeating: 0, count: batch * inputShape.count)
        for plane in 0..<(batch * inputShape.dims[0]) {
            let dxp = dx + plane * h * w, dyp = dy + plane * ho * wo
            for oh in 0..<ho {
                for ow in 0..<wo {
                    let g = dyp[oh * wo + ow] * scale
                    for ki in 0..<kernel {
                        let row = dxp + (oh * stride + ki) * w + ow * stride
                        for kj in 0..<kernel { row[kj] += g }
                    }
                }
            }
        }
    }
}

/// Global average pooling, torch.nn.AdaptiveAvgPool2d(1): (C, H, W) to (C, 1, 1), each channel's mean.
public final class GlobalAvgPool2d: Layer {
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        graph.add("GlobalAveragePool", [x])
    }

    public let inputShape: Shape
    public let outputShape: Shape

    public init?(input: Shape) {
        guard input.rank == 3 else { return nil }
        inputShape = input
        outputShape = Shape(input.dims[0], 1, 1)
    }

    public var typeName: String { "AdaptiveAvgPool2d(output_size=1)" }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        let plane = inputShape.dims[1] * inputShape.dims[2]
        let scale = 1 / Float(plane)
        for i in 0..<(batch * inputShape.dims[0]) {
            var sum: Float = 0
            let xp = x + i * plane
            for j in 0..<plane { sum += xp[j] }
            y[i] = sum * scale
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        let plane = inputShape.dims[1] * inputShape.dims[2]
        let scale = 1 / Float(plane)
        for i in 0..<(batch * inputShape.dims[0]) {
            (dx + i * plane).update(repeating: dy[i] * scale, count: plane)
        }
    }
}
