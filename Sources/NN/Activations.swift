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

/// Elementwise activations. Each backward needs only the output y.
public final class ReLU: ShapePreserving {
    public let shape: Shape
    public init(_ shape: Shape) { self.shape = shape }
    public var typeName: String { "ReLU" }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        for i in 0..<(batch * shape.count) { y[i] = max(x[i], 0) }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        for i in 0..<(batch * shape.count) { dx[i] = y[i] > 0 ? dy[i] : 0 }
    }
}

public final class Sigmoid: ShapePreserving {
    public let shape: Shape
    public init(_ shape: Shape) { self.shape = shape }
    public var typeName: String { "Sigmoid" }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        for i in 0..<(batch * shape.count) { y[i] = 1 / (1 + expf(-x[i])) }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        for i in 0..<(batch * shape.count) { dx[i] = dy[i] * y[i] * (1 - y[i]) }
    }
}

public final class Tanh: ShapePreserving {
    public let shape: Shape
    public init(_ shape: Shape) { self.shape = shape }
    public var typeName: String { "Tanh" }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        for i in 0..<(batch * shape.count) { y[i] = tanhf(x[i]) }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        for i in 0..<(batch * shape.count) { dx[i] = dy[i] * (1 - y[i] * y[i]) }
    }
}

/// Reshapes (C, H, W) to (C*H*W). Its output is its input's memory.
public final class Flatten: Layer {
    public let inputShape: Shape
    public init(_ inputShape: Shape) { self.inputShape = inputShape }
    public var typeName: String { "Flatten" }
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
