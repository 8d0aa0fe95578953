import Engine

/// torch.optim.RMSprop (centered = False):
///   g = grad + weight_decay * p
///   v = alpha v + (1 - alpha) g^2;  avg = sqrt(v) + eps
///   momentum > 0: buf = momentum buf + g / avg;  p -= lr buf
///   otherwise:    p -= lr g / avg
public final class RMSprop: Optimizer {
    public var learningRate: Float
    public let alpha: Float, eps: Float, weightDecay: Float, momentum: Float
    public var stepCount = 0
    private let squareAvg: FloatBuffer, momentumBuffer: FloatBuffer

    public init(count: Int, lr: Float = 0.01, alpha: Float = 0.99, eps: Float = 1e-8, weightDecay: Float = 0, momentum: Float = 0,
                allocate: (Int) throws -> FloatBuffer = { FloatBuffer(count: $0) }) rethrows {
        learningRate = lr
        self.alpha = alpha
        self.eps = eps
        self.weightDecay = weightDecay
        self.momentum = momentum
        squareAvg = try allocate(count)
        momentumBuffer = momentum > 0 ? try allocate(count) : FloatBuffer(count: 0)
    }

    public var name: String { "RMSprop" }
    public var stateBuffers: [(name: String, buffer: FloatBuffer)] {
        momentum > 0 ? [("square_avg", squareAvg), ("momentum_buffer", momentumBuffer)] : [("square_avg", squareAvg)]
    }
    public var hyperparameters: [(String, String)] {
        [("lr", "\(learningRate)"), ("alpha", "\(alpha)"), ("eps", "\(eps)"), ("weight_decay", "\(weightDecay)"), ("momentum", "\(momentum)")]
    }

    public func update(parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, offset: Int, count: Int) {
        let lr = learningRate, a = alpha, eps = eps, wd = weightDecay, mu = momentum
        let v = squareAvg.pointer + offset, buf = momentumBuffer.pointer + (mu > 0 ? offset : 0)
        var i = 0
        while i + 16 <= count {
            let pv = load16(p, i)
            let g = load16(gradients, i) + wd * pv
            let vi = a * load16(v, i) + (1 - a) * g * g
            store16(vi, v, i)
            let step = g / (vi.squareRoot() + eps)
            if mu > 0 {
                let b = mu * load16(buf, i) + step
                store16(b, buf, i)
                store16(pv - lr * b, p, i)
            } else {
                store16(pv - lr * step, p, i)
            }
            i += 16
        }
        while i < count {
            let g = gradients[i] + wd * p[i]
            let vi = a * v[i] + (1 - a) * g * g
            v[i] = vi
            let step = g / (vi.squareRoot() + eps)
            if mu > 0 {
                let b = mu * buf[i] + step
                buf[i] = b
                p[i] -= lr * b
            } else {
                p[i] -= lr * step
            }
            i += 1
        }
    }
}
