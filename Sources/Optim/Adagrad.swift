import Engine

/// torch.optim.Adagrad (initial_accumulator_value = 0):
///   g = grad + weight_decay * p
///   clr = lr / (1 + (t - 1) * lr_decay)        t: this step, from 1
///   sum += g^2;  p -= clr * g / (sqrt(sum) + eps)
public final class Adagrad: Optimizer {
    public var learningRate: Float
    public let lrDecay: Float, weightDecay: Float, eps: Float
    public var stepCount = 0
    private let sum: FloatBuffer

    public init(count: Int, lr: Float = 0.01, lrDecay: Float = 0, weightDecay: Float = 0, eps: Float = 1e-10,
                allocate: (Int) throws -> FloatBuffer = { FloatBuffer(count: $0) }) rethrows {
        learningRate = lr
        self.lrDecay = lrDecay
        self.weightDecay = weightDecay
        self.eps = eps
        sum = try allocate(count)
    }

    public var name: String { "Adagrad" }
    public var stateBuffers: [(name: String, buffer: FloatBuffer)] { [("sum", sum)] }
    public var hyperparameters: [(String, String)] {
        [("lr", "\(learningRate)"), ("lr_decay", "\(lrDecay)"), ("weight_decay", "\(weightDecay)"), ("eps", "\(eps)")]
    }

    public func update(parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, offset: Int, count: Int) {
        let clr = learningRate / (1 + Float(stepCount) * lrDecay), wd = weightDecay, eps = eps
        let s = sum.pointer + offset
        var i = 0
        while i + 16 <= count {
            let pv = load16(p, i)
            let g = load16(gradients, i) + wd * pv
            let si = load16(s, i) + g * g
            store16(si, s, i)
            store16(pv - clr * g / (si.squareRoot() + eps), p, i)
            i += 16
        }
        while i < count {
            let g = gradients[i] + wd * p[i]
            let si = s[i] + g * g
            s[i] = si
            p[i] -= clr * g / (si.squareRoot() + eps)
            i += 1
        }
    }
}
