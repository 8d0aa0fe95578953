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
    public var threads = 1
    private let momentumBuffer: FloatBuffer

    public init(count: Int, lr: Float, momentum: Float = 0, dampening: Float = 0, nesterov: Bool = false, weightDecay: Float = 0) {
        learningRate = lr
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        momentumBuffer = FloatBuffer(count: momentum != 0 ? count : 0)
    }

    public var name: String { "SGD" }
    public var stateBuffers: [(name: String, buffer: FloatBuffer)] { momentum != 0 ? [("momentum_buffer", momentumBuffer)] : [] }
    public var hyperparameters: [(String, String)] {
        [("lr", "\(learningRate)"), ("momentum", "\(momentum)"), ("dampening", "\(dampening)"),
         ("nesterov", "\(nesterov)"), ("weight_decay", "\(weightDecay)")]
    }

    public func step(parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, count: Int) {
        let lr = learningRate, wd = weightDecay, mu = momentum, damp = 1 - dampening
        let buf = momentumBuffer.pointer
        let first = stepCount == 0, nesterov = nesterov
        forEachChunk(count: count, chunks: threads) { range in
            // 16 lanes at a time, then the tail: one pass over p, g and the momentum buffer.
            var i = range.lowerBound
            if mu == 0 {
                while i + 16 <= range.upperBound {
                    let pv = load16(p, i)
                    store16(pv - lr * (load16(gradients, i) + wd * pv), p, i)
                    i += 16
                }
                while i < range.upperBound { p[i] -= lr * (gradients[i] + wd * p[i]); i += 1 }
                return
            }
            while i + 16 <= range.upperBound {
                let pv = load16(p, i)
                let g = load16(gradients, i) + wd * pv
                let b = first ? g : mu * load16(buf, i) + damp * g
                store16(b, buf, i)
                store16(pv - lr * (nesterov ? g + mu * b : b), p, i)
                i += 16
            }
            while i < range.upperBound {
                let g = gradients[i] + wd * p[i]
                let b = first ? g : mu * buf[i] + damp * g
                buf[i] = b
                p[i] -= lr * (nesterov ? g + mu * b : b)
                i += 1
            }
        }
        stepCount += 1
    }
}
