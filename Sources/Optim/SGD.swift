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
        if mu == 0 {
            for i in 0..<count { p[i] -= lr * (gradients[i] + wd * p[i]) }
        } else {
            let buf = momentumBuffer.pointer
            let first = stepCount == 0
            for i in 0..<count {
                let g = gradients[i] + wd * p[i]
                let b = first ? g : mu * buf[i] + damp * g
                buf[i] = b
                p[i] -= lr * (nesterov ? g + mu * b : b)
            }
        }
        stepCount += 1
    }
}
