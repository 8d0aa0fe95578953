import Engine

/// torch.optim.SGD:
///   g = grad + weight_decay * p
///   buf = g (first step), else momentum * buf + (1 - dampening) * g
///   g = g + momentum * buf if nesterov else buf
///   p -= lr * g
public final class SGD: Optimizer {
    public var learningRate: Float
    public let momentum: Float, dampening: Float, nesterov: Bool, weightDecay: Float
    public var stepCount = 0
    private let momentumBuffer: FloatBuffer

    public init(count: Int, lr: Float, momentum: Float = 0, dampening: Float = 0, nesterov: Bool = false, weightDecay: Float = 0,
                allocate: (Int) throws -> FloatBuffer = { FloatBuffer(count: $0) }) rethrows {
        learningRate = lr
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        momentumBuffer = momentum != 0 ? try allocate(count) : FloatBuffer(count: 0)
    }

    public var name: String { "SGD" }
    public var stateBuffers: [(name: String, buffer: FloatBuffer)] { momentum != 0 ? [("momentum_buffer", momentumBuffer)] : [] }
    public var hyperparameters: [(String, String)] {
        [("lr", "\(learningRate)"), ("momentum", "\(momentum)"), ("dampening", "\(dampening)"),
         ("nesterov", "\(nesterov)"), ("weight_decay", "\(weightDecay)")]
    }

    public func update(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>, offset: Int, count: Int) {
        let lr = learningRate, wd = weightDecay, mu = momentum, damp = 1 - dampening
        let buf = momentumBuffer.pointer + (mu != 0 ? offset : 0)
        let first = stepCount == 0, nesterov = nesterov
        // 16 lanes at a time, then the tail: one pass over p, g and the momentum buffer.
        var i = 0
        if mu == 0 {
            while i + 16 <= count {
                let pv = load16(p, i)
                store16(pv - lr * (load16(g, i) + wd * pv), p, i)
                i += 16
            }
            while i < count { p[i] -= lr * (g[i] + wd * p[i]); i += 1 }
            return
        }
        while i + 16 <= count {
            let pv = load16(p, i)
            let gv = load16(g, i) + wd * pv
            let b = first ? gv : mu * load16(buf, i) + damp * gv
            store16(b, buf, i)
            store16(pv - lr * (nesterov ? gv + mu * b : b), p, i)
            i += 16
        }
        while i < count {
            let gv = g[i] + wd * p[i]
            let b = first ? gv : mu * buf[i] + damp * gv
            buf[i] = b
            p[i] -= lr * (nesterov ? gv + mu * b : b)
            i += 1
        }
    }
}
