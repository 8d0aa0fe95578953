import Engine

/// torch.optim.Adam, and AdamW when `decoupled`:
///   Adam:  g = grad + weight_decay * p          AdamW: p *= 1 - lr * weight_decay
///   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
///   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
public final class Adam: Optimizer {
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float, decoupled: Bool
    public var stepCount = 0
    private let m: FloatBuffer, v: FloatBuffer

    public init(count: Int, lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8,
                weightDecay: Float = 0, decoupled: Bool = false,
                allocate: (Int) throws -> FloatBuffer = { FloatBuffer(count: $0) }) rethrows {
        learningRate = lr
        beta1 = betas.0
        beta2 = betas.1
        self.eps = eps
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        m = try allocate(count)
        v = try allocate(count)
    }

    public var name: String { decoupled ? "AdamW" : "Adam" }
    public var stateBuffers: [(name: String, buffer: FloatBuffer)] { [("exp_avg", m), ("exp_avg_sq", v)] }
    public var hyperparameters: [(String, String)] {
        [("lr", "\(learningRate)"), ("betas", "(\(beta1), \(beta2))"), ("eps", "\(eps)"), ("weight_decay", "\(weightDecay)")]
    }

    public func update(parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, offset: Int, count: Int) {
        let t = Float(stepCount + 1)
        let bc1 = 1 - pow(beta1, t), bc2Sqrt = (1 - pow(beta2, t)).squareRoot()
        let stepSize = learningRate / bc1
        let decay: Float = decoupled ? 1 - learningRate * weightDecay : 1
        let l2: Float = decoupled ? 0 : weightDecay
        // In C (Kernels.adam): the same operations, 16 lanes with a vector square root.
        Kernels.adam(p, gradients: gradients, m: m.pointer + offset, v: v.pointer + offset, count: count, beta1: beta1,
                     beta2: beta2, l2: l2, decay: decay, stepSize: stepSize, bc2Sqrt: bc2Sqrt, eps: eps)
    }
}

@inline(__always) func pow(_ x: Float, _ y: Float) -> Float { powf(x, y) }
@_silgen_name("powf") func powf(_ x: Float, _ y: Float) -> Float
