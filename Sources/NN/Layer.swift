import Engine

/// What a layer may need to know about the current step besides its input.
public struct StepContext {
    /// Train mode (Dropout active) or eval mode.
    public var training: Bool
    /// Run seed and optimizer step: with `sampleIDs` they key Dropout's counter-based masks, so a mask
    /// does not depend on which rank holds a sample, and resume needs no RNG state.
    public var seed: UInt64
    public var step: UInt64
    /// Dataset index of each row of the batch, or nil (eval, or no dropout).
    public var sampleIDs: UnsafePointer<Int32>?
    /// false: backward *writes* parameter gradients (no zeroing pass needed before it);
    /// true: it *adds* to them (gradient accumulation over several backward passes).
    public var accumulateGradients: Bool

    public init(training: Bool, seed: UInt64 = 0, step: UInt64 = 0, sampleIDs: UnsafePointer<Int32>? = nil,
                accumulateGradients: Bool = false) {
        self.training = training
        self.seed = seed
        self.step = step
        self.sampleIDs = sampleIDs
        self.accumulateGradients = accumulateGradients
    }

    public static let eval = StepContext(training: false)
}

/// A layer with explicit forward and backward, llm.c style: plain pointers in, plain pointers out.
/// Shapes are per sample; buffers hold `batch` samples row-major. `backward` writes the parameter
/// gradients, or adds to them when `context.accumulateGradients`, and writes the input gradient `dx`
/// (nil when nobody needs it).
public protocol Layer: AnyObject {
    /// PyTorch's class name, for the summary.
    var typeName: String { get }
    var inputShape: Shape { get }
    var outputShape: Shape { get }
    /// True when the output is the input's memory (Flatten): the model gives it no buffer of its own.
    var isView: Bool { get }

    /// Reserves this layer's parameters in the flat store, named `prefix + "weight"` etc.
    func reserveParameters(in store: ParameterStore, prefix: String)
    /// Takes pointers into the store's buffers, once the store is sealed.
    func bind(to store: ParameterStore)
    /// PyTorch's default initialization.
    func resetParameters(rng: inout RandomStream)
    var parameterCount: Int { get }

    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext)
    func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                  dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext)
}

extension Layer {
    public var isView: Bool { false }
    public func reserveParameters(in store: ParameterStore, prefix: String) {}
    public func bind(to store: ParameterStore) {}
    public func resetParameters(rng: inout RandomStream) {}
    public var parameterCount: Int { 0 }
}

/// A layer that can apply the elementwise activation after it in its own output pass (Linear: in
/// the epilogue after the GEMM, and f' in the backward pass that sums the bias gradient). Sequential
/// offers each such layer the activation that follows it; the activation then becomes a view.
public protocol FusesActivation: Layer {
    /// Takes over `kind`; false when this layer cannot (it then runs on its own).
    func fuse(_ kind: ActivationKind) -> Bool
}

/// A layer whose randomness is keyed by its position among such layers (Dropout's masks), so that
/// two of them in one model draw different masks.
public protocol KeyedRandomness: Layer {
    var randomnessIndex: UInt64 { get set }
}
