import Engine

/// The weight and optional bias of Linear and Conv2d: reserved under torch's names ("weight",
/// "bias"), bound once, and initialized as their reset_parameters do: kaiming_uniform_(a=sqrt(5)),
/// which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for the weight, and the same bound for the bias.
struct WeightAndBias {
    /// (out, in) or (out, in, K, K).
    let weightShape: [Int]
    let hasBias: Bool
    private var weightOffset = 0, biasOffset = 0
    private(set) var weight: UnsafeMutablePointer<Float>!
    private(set) var weightGrad: UnsafeMutablePointer<Float>!
    private(set) var bias: UnsafeMutablePointer<Float>?
    private(set) var biasGrad: UnsafeMutablePointer<Float>?

    init(weightShape: [Int], bias: Bool) {
        self.weightShape = weightShape
        hasBias = bias
    }

    var outputs: Int { weightShape[0] }
    /// Inputs to one output: the weight's values per output.
    var fanIn: Int { weightShape.dropFirst().reduce(1, *) }
    var weightCount: Int { outputs * fanIn }
    var count: Int { weightCount + (hasBias ? outputs : 0) }

    mutating func reserve(in store: ParameterStore, prefix: String) {
        weightOffset = store.reserve(name: prefix + "weight", shape: weightShape)
        if hasBias { biasOffset = store.reserve(name: prefix + "bias", shape: [outputs]) }
    }

    mutating func bind(to store: ParameterStore) {
        weight = store.parameterPointer(weightOffset)
        weightGrad = store.gradientPointer(weightOffset)
        if hasBias {
            bias = store.parameterPointer(biasOffset)
            biasGrad = store.gradientPointer(biasOffset)
        }
    }

    func reset(rng: inout RandomStream) {
        let bound = 1 / Float(fanIn).squareRoot()
        for i in 0..<weightCount { weight[i] = rng.uniform(-bound, bound) }
        if let bias { for i in 0..<outputs { bias[i] = rng.uniform(-bound, bound) } }
    }
}
