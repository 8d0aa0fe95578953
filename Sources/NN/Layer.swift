import Engine

/// Sums values over every rank that takes part in a training step, in a fixed order, so that every
/// rank gets the same result (synchronized BatchNorm's per-channel statistics). The trainer provides
/// it; without one (one process, evaluation) a layer's batch is the whole batch.
public protocol CrossReplicaSum: AnyObject {
    func sum(_ values: UnsafeMutablePointer<Double>, count: Int)
}

/// What a layer may need to know about the current step besides its input.
public struct StepContext {
    /// Train mode (Dropout active, BatchNorm on batch statistics) or eval mode.
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
    /// The ranks whose samples form the global batch (BatchNorm's statistics), or nil: this batch alone.
    public var replicas: CrossReplicaSum?
    /// `--invariant-shards`: sums over the batch go shard by shard, then through a fixed tree, so
    /// they do not depend on the number of ranks (one shard: the rank's whole batch, still summed
    /// in the fixed order: a layer must then compute exactly what it computes for one shard's leaf,
    /// as Conv2d's Winograd path does, summing each shard's samples in order). nil: one sum over
    /// this rank's batch, in any order.
    public var shards: GradientShards?
    /// `shards` when the rank's batch is cut into more than one (each summed into its own leaf);
    /// nil when off or one shard (the sums go straight into the gradients).
    public var splitShards: GradientShards? { shards.flatMap { $0.count > 1 ? $0 : nil } }
    /// The step's last backward pass (with `--accumulate N`, the N-th): with shards, the layers then
    /// combine the leaves into the gradients; before it, they only add to the leaves.
    public var finalBackward: Bool

    public init(training: Bool, seed: UInt64 = 0, step: UInt64 = 0, sampleIDs: UnsafePointer<Int32>? = nil,
                accumulateGradients: Bool = false, replicas: CrossReplicaSum? = nil, shards: GradientShards? = nil,
                finalBackward: Bool = true) {
        self.training = training
        self.seed = seed
        self.step = step
        self.sampleIDs = sampleIDs
        self.accumulateGradients = accumulateGradients
        self.replicas = replicas
        self.shards = shards
        self.finalBackward = finalBackward
    }

    public static let eval = StepContext(training: false)
}

/// A layer with explicit forward and backward, llm.c style: plain pointers in, plain pointers out.
/// Shapes are per sample; buffers hold `batch` samples row-major (N, C, H, W). `backward` writes the
/// parameter gradients, or adds to them when `context.accumulateGradients`, and writes the input
/// gradient `dx` (nil when nobody needs it). A layer must accept `batch == 0` (a rank with no samples
/// still joins every collective a step makes).
///
/// Memory is declared once: `reserve` names the parameters, buffers, workspace and scratch the layer
/// needs for `maxBatch` samples; after the store is sealed, `bind` takes pointers that stay valid
/// for the model's life.
public protocol Layer: AnyObject {
    /// PyTorch's module, for the summary: "Conv2d(1, 32, kernel_size=3)".
    var typeName: String { get }
    var inputShape: Shape { get }
    var outputShape: Shape { get }
    /// True when the output is the input's memory (Flatten, a fused activation): no buffer of its own.
    var isView: Bool { get }
    /// False for a layer that the equivalent torch.nn.Sequential would not have (the Flatten that
    /// `mlp:` presets put first): it takes no index in the tensor names.
    var hasTorchIndex: Bool { get }

    /// Reserves this layer's memory: parameters named `prefix + "weight"` etc., buffers, workspace
    /// and scratch for batches of up to `maxBatch` samples.
    func reserve(in store: ParameterStore, prefix: String, maxBatch: Int)
    /// Takes pointers into the sealed store, once.
    func bind(to store: ParameterStore)
    /// PyTorch's default initialization.
    func resetParameters(rng: inout RandomStream)
    var parameterCount: Int { get }
    /// The matrix products one training step makes at `batch` samples (the bench's sgemm bound);
    /// `inputGrad`: whether backward computes dx. `direct`: those of the layer's definition as GEMMs
    /// (a convolution's im2col), not those of a faster algorithm that it runs instead (Winograd).
    func gemms(batch: Int, inputGrad: Bool, direct: Bool) -> [GEMMShape]

    /// Adds this layer's inference operators on `x` to `graph` (ONNX's names; parameters named
    /// `prefix` + "weight" and so on, as in the weights file) and returns its output's name.
    func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext)
    func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                  dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext)
}

extension Layer {
    /// This layer alone in a store of its own, sealed and bound, for `maxBatch` samples (tests and
    /// tools; a model gets its store from `Sequential`). The store must outlive the layer's use.
    public func standaloneStore(maxBatch: Int) -> ParameterStore {
        let store = ParameterStore()
        reserve(in: store, prefix: "", maxBatch: maxBatch)
        store.seal()
        bind(to: store)
        return store
    }

    public var isView: Bool { false }
    public var hasTorchIndex: Bool { true }
    public func reserve(in store: ParameterStore, prefix: String, maxBatch: Int) {}
    public func bind(to store: ParameterStore) {}
    public func resetParameters(rng: inout RandomStream) {}
    public var parameterCount: Int { 0 }
    public func gemms(batch: Int, inputGrad: Bool, direct: Bool) -> [GEMMShape] { [] }
}

/// A layer that can apply the elementwise activation after it in its own output pass (Linear and
/// Conv2d: in the epilogue after the GEMM, and f' in the backward pass that sums the bias gradient).
/// A chain offers each such layer the activation that follows it; the activation then becomes a view.
public protocol FusesActivation: Layer {
    /// Takes over `kind`; false when this layer cannot (it then runs on its own).
    func fuse(_ kind: ActivationKind) -> Bool
}

/// A layer that can run the MaxPool2d(2, stride 2) after it (after the activation it fused, if any)
/// in its own pass, one sample at a time: its own output then stays in cache between the two and
/// is never stored whole (Conv2d). A chain offers each such layer the pooling that follows it; when
/// taken, the chain runs the pair as one step through the two methods below, and the pooling and
/// the activation between them do nothing of their own.
public protocol FusesMaxPool: Layer {
    /// Takes over `pool`; false when this layer cannot (they then run on their own).
    func fuse(_ pool: MaxPool2d) -> Bool
    /// This layer's forward, then the pool's: `pooled` (and the pool's argmax) get the pool's output.
    func forward(_ x: UnsafePointer<Float>, pooled: UnsafeMutablePointer<Float>, batch: Int, context: StepContext)
    /// The pool's backward, then this layer's, from the gradient of the pool's output.
    func backward(x: UnsafePointer<Float>, pooled: UnsafePointer<Float>, dPooled: UnsafePointer<Float>,
                  dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext)
}

/// A layer whose randomness is keyed by its position among such layers (Dropout's masks), so that
/// two of them in one model draw different masks.
public protocol KeyedRandomness: Layer {
    var randomnessIndex: UInt64 { get set }
}

/// A layer made of other layers (a residual block): the model numbers their randomness too, and the
/// summary lists them.
public protocol ContainsLayers: Layer {
    /// Direct children and their names inside the block ("body.0", "shortcut").
    var children: [(name: String, layer: Layer)] { get }
}
