import Engine
import Glibc

/// A layer whose output has its input's shape (activations, Dropout, softmaxes).
public protocol ShapePreserving: Layer {
    var shape: Shape { get }
}

extension ShapePreserving {
    public var inputShape: Shape { shape }
    public var outputShape: Shape { shape }
}

/// The elementwise activations, which a preceding Linear can apply in its own pass.
public enum ActivationKind: Sendable {
    case relu, sigmoid, tanh

    @inline(__always) func apply(_ v: Float) -> Float {
        switch self {
        case .relu: return max(v, 0)
        case .sigmoid: return 1 / (1 + expf(-v))
        case .tanh: return tanhf(v)
        }
    }

    /// f'(x) from y = f(x).
    @inline(__always) func derivative(output y: Float) -> Float {
        switch self {
        case .relu: return y > 0 ? 1 : 0
        case .sigmoid: return y * (1 - y)
        case .tanh: return 1 - y * y
        }
    }

    /// Calls `body` with f, chosen once, so that the loop inside `body` is compiled for one function
    /// (activation layers, and the epilogues of the layers that fuse them).
    @inline(__always) func withFunction(_ body: ((Float) -> Float) -> Void) {
        switch self {
        case .relu: body { ActivationKind.relu.apply($0) }
        case .sigmoid: body { ActivationKind.sigmoid.apply($0) }
        case .tanh: body { ActivationKind.tanh.apply($0) }
        }
    }

    /// Calls `body` with y -> f'(x), chosen once.
    @inline(__always) func withDerivative(_ body: ((Float) -> Float) -> Void) {
        switch self {
        case .relu: body { ActivationKind.relu.derivative(output: $0) }
        case .sigmoid: body { ActivationKind.sigmoid.derivative(output: $0) }
        case .tanh: body { ActivationKind.tanh.derivative(output: $0) }
        }
    }

    /// y = f(x) over `count` values.
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        withFunction { f in for i in 0..<count { y[i] = f(x[i]) } }
    }

    /// dx = dy * f'(x), from y = f(x), over `count` values.
    func backward(y: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, count: Int) {
        withDerivative { d in for i in 0..<count { dx[i] = dy[i] * d(y[i]) } }
    }
}

/// An elementwise activation; each backward needs only the output y. When the layer before it fuses
/// it (`FusesActivation`), it becomes a view: that layer's output already holds f(...), and its
/// backward applies f'.
public protocol Activation: ShapePreserving {
    var kind: ActivationKind { get }
    var fusedIntoPrevious: Bool { get set }
}

extension Activation {
    public var isView: Bool { fusedIntoPrevious }

    /// The activation as its own operator, fused or not: the graph has no fusion.
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        switch kind {
        case .relu: return graph.add("Relu", [x])
        case .sigmoid: return graph.add("Sigmoid", [x])
        case .tanh: return graph.add("Tanh", [x])
        }
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        if !fusedIntoPrevious { kind.forward(x, y, count: batch * shape.count) }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        if let dx, !fusedIntoPrevious { kind.backward(y: y, dy: dy, dx: dx, count: batch * shape.count) }
    }
}

public final class ReLU: Activation {
    public let shape: Shape
    public var fusedIntoPrevious = false
    public var kind: ActivationKind { .relu }
    public init(_ shape: Shape) { self.shape = shape }
    public var typeName: String { "ReLU" }
}

public final class Sigmoid: Activation {
    public let shape: Shape
    public var fusedIntoPrevious = false
    public var kind: ActivationKind { .sigmoid }
    public init(_ shape: Shape) { self.shape = shape }
    public var typeName: String { "Sigmoid" }
}

public final class Tanh: Activation {
    public let shape: Shape
    public var fusedIntoPrevious = false
    public var kind: ActivationKind { .tanh }
    public init(_ shape: Shape) { self.shape = shape }
    public var typeName: String { "Tanh" }
}

/// Reshapes (C, H, W) to (C*H*W), as torch.nn.Flatten. Its output is its input's memory.
public final class Flatten: Layer {
    /// torch.nn.Flatten: everything after the batch dimension in one.
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        graph.add("Flatten", [x], [("axis", .int(1))])
    }
    public let inputShape: Shape
    /// The reshape that `mlp:` presets put first: torch's model has no module for it (the tutorials
    /// flatten in the training loop), so it takes no index in the tensor names.
    public let implicit: Bool
    public init(_ inputShape: Shape, implicit: Bool = false) {
        self.inputShape = inputShape
        self.implicit = implicit
    }
    public var typeName: String { "Flatten" }
    public var hasTorchIndex: Bool { !implicit }
    public var outputShape: Shape { Shape(inputShape.count) }
    public var isView: Bool { true }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        if UnsafePointer(y) != x { y.update(from: x, count: batch * inputShape.count) }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        if let dx, UnsafePointer(dx) != dy { dx.update(from: dy, count: batch * inputShape.count) }
    }
}
