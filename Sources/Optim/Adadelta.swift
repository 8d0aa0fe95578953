import Engine

/// torch.optim.Adadelta:
///   g = grad + weight_decay * p
///   v = rho v + (1 - rho) g^2
///   delta = sqrt(u + eps) / sqrt(v + eps) * g
///   u = rho u + (1 - rho) delta^2;  p -= lr delta
public final class Adadelta: Optimizer {
    public var learningRate: Float
    public let rho: Float, eps: Float, weightDecay: Float
    public var stepCount = 0
    private let squareAvg: FloatBuffer, accDelta: FloatBuffer

    public init(count: Int, lr: Float = 1, rho: Float = 0.9, eps: Float = 1e-6, weightDecay: Float = 0,
                allocate: (Int) throws -> FloatBuffer = { FloatBuffer(count: $0) }) rethrows {
        learningRate = lr
        self.rho = rho
        self.eps = eps
        self.weightDecay = weightDecay
        squareAvg = try allocate(count)
        accDelta = try allocate(count)
    }

    public var name: String { "Adadelta" }
    public var stateBuffers: [(name: String, buffer: FloatBuffer)] { [("square_avg", squareAvg), ("acc_delta", accDelta)] }
    public var hyperparameters: [(String, String)] {
        [("lr", "\(learningRate)"), ("rho", "\(rho)"), ("eps", "\(eps)"), ("weight_decay", "\(weightDecay)")]
    }

    public func update(parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, offset: Int, count: Int) {
        let lr = learningRate, rho = rho, eps = eps, wd = weightDecay
        let v = squareAvg.pointer + offset, u = accDelta.pointer + offset
        var i = 0
        while i + 16 <= count {
            let pv = load16(p, i)
            let g = load16(gradients, i) + wd * pv
            let vi = rho * load16(v, i) + (1 - rho) * g * g
            store16(vi, v, i)
            let ui = load16(u, i)
            let delta = (ui + eps).squareRoot() / (vi + eps).squareRoot() * g
            store16(rho * ui + (1 - rho) * delta * delta, u, i)
            store16(pv - lr * delta, p, i)
            i += 16
        }
        while i < count {
            let g = gradients[i] + wd * p[i]
            let vi = rho * v[i] + (1 - rho) * g * g
            v[i] = vi
            let delta = (u[i] + eps).squareRoot() / (vi + eps).squareRoot() * g
            u[i] = rho * u[i] + (1 - rho) * delta * delta
            p[i] -= lr * delta
            i += 1
        }
    }
}
