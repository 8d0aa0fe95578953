import Engine

/// An optimizer updates the flat parameter buffer from the flat gradient buffer in one pass, with
/// torch.optim's update rule. Its state (moments, step count) lives in flat buffers of the same
/// size, so checkpoints save it as a few arrays.
///
/// A step can be applied whole (`step`) or in pieces (`update` over ranges, then `stepCount += 1`):
/// with node-shared memory each rank updates only its slice of the one shared copy.
public protocol Optimizer: AnyObject {
    var name: String { get }
    var learningRate: Float { get set }
    /// Optimizer steps taken so far (torch's `state['step']`).
    var stepCount: Int { get set }
    /// Step `stepCount + 1` for values `offset ..< offset + count`: `parameters` and `gradients`
    /// point at value `offset`, and the state buffers are indexed by absolute position. Does not
    /// count the step. Elementwise, so a step applied in pieces equals the whole step bit for bit.
    func update(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, offset: Int, count: Int)
    /// Named state buffers, for checkpoints: restoring them and `stepCount` restores the optimizer.
    var stateBuffers: [(name: String, buffer: FloatBuffer)] { get }
    /// The hyperparameters, for the run header and checkpoints.
    var hyperparameters: [(String, String)] { get }
}

extension Optimizer {
    /// One whole step over `count` values.
    public func step(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, count: Int) {
        update(parameters: parameters, gradients: gradients, offset: 0, count: count)
        stepCount = stepCount + 1  // get and set: `+=` on a protocol property may heap-allocate a coroutine frame
    }
}

public struct OptimizerError: Error, CustomStringConvertible {
    public let description: String
}

/// What `--optimizer` and its flags describe, validated up front as tinygrad does.
public struct OptimizerConfig: Sendable, Equatable {
    public enum Kind: String, CaseIterable, Sendable { case sgd, adam, adamw, rmsprop, adagrad, adadelta }

    public var kind: Kind
    public var learningRate: Float?
    public var momentum: Float = 0
    public var dampening: Float = 0
    public var nesterov = false
    public var weightDecay: Float?
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var alpha: Float = 0.99

    public init(kind: Kind, learningRate: Float? = nil) {
        self.kind = kind
        self.learningRate = learningRate
    }

    /// torch.optim's default learning rates (SGD has none in torch; 0.01 is the tutorials' value).
    public var resolvedLearningRate: Float {
        learningRate ?? {
            switch kind {
            case .adam, .adamw: return 1e-3
            case .adadelta: return 1
            case .sgd, .rmsprop, .adagrad: return 0.01
            }
        }()
    }

    /// torch's defaults: 0 for all but AdamW's 0.01.
    public var resolvedWeightDecay: Float { weightDecay ?? (kind == .adamw ? 0.01 : 0) }

    public func validate() throws {
        func bad(_ s: String) -> OptimizerError { OptimizerError(description: s) }
        let lr = resolvedLearningRate
        guard lr.isFinite, lr >= 0 else { throw bad("invalid learning rate \(lr): must be >= 0") }
        guard momentum.isFinite, momentum >= 0 else { throw bad("invalid momentum \(momentum): must be >= 0") }
        guard resolvedWeightDecay.isFinite, resolvedWeightDecay >= 0 else { throw bad("invalid weight decay \(resolvedWeightDecay): must be >= 0") }
        guard beta1 >= 0, beta1 < 1, beta2 >= 0, beta2 < 1 else { throw bad("invalid betas (\(beta1), \(beta2)): each must be in [0, 1)") }
        guard eps >= 0 else { throw bad("invalid eps \(eps): must be >= 0") }
        guard alpha >= 0 else { throw bad("invalid alpha \(alpha): must be >= 0") }
        if nesterov && (momentum <= 0 || dampening != 0) {
            throw bad("nesterov momentum requires a momentum > 0 and zero dampening")
        }
    }

    /// How many state buffers of the parameters' size the optimizer keeps (`stateBuffers.count`).
    public var stateBufferCount: Int {
        switch kind {
        case .sgd: return momentum != 0 ? 1 : 0
        case .adam, .adamw: return 2
        case .rmsprop: return momentum > 0 ? 2 : 1
        case .adagrad: return 1
        case .adadelta: return 2
        }
    }

    /// `allocate` provides each state buffer (zeroed): private memory by default, or slices of a
    /// node-shared window when the ranks share one copy of the parameters.
    public func make(parameterCount: Int, allocate: (Int) throws -> FloatBuffer = { FloatBuffer(count: $0) }) throws -> Optimizer {
        try validate()
        let lr = resolvedLearningRate, wd = resolvedWeightDecay
        switch kind {
        case .sgd:
            return try SGD(count: parameterCount, lr: lr, momentum: momentum, dampening: dampening, nesterov: nesterov, weightDecay: wd,
                           allocate: allocate)
        case .adam, .adamw:
            return try Adam(count: parameterCount, lr: lr, betas: (beta1, beta2), eps: eps, weightDecay: wd, decoupled: kind == .adamw,
                            allocate: allocate)
        case .rmsprop:
            return try RMSprop(count: parameterCount, lr: lr, alpha: alpha, eps: eps, weightDecay: wd, momentum: momentum, allocate: allocate)
        case .adagrad:
            return try Adagrad(count: parameterCount, lr: lr, weightDecay: wd, allocate: allocate)
        case .adadelta:
            return try Adadelta(count: parameterCount, lr: lr, weightDecay: wd, allocate: allocate)
        }
    }
}
