import Engine
import Glibc

/// torch.nn.LogSoftmax(dim=1): y = x - logsumexp(x) per row.
public final class LogSoftmax: ShapePreserving {
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        graph.add("LogSoftmax", [x], [("axis", .int(1))])
    }

    public let classes: Int
    public let shape: Shape
    public init(_ classes: Int) {
        self.classes = classes
        shape = Shape(classes)
    }
    public var typeName: String { "LogSoftmax(dim=1)" }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        for r in 0..<batch {
            let lse = logSumExp(x + r * classes, classes)
            for c in 0..<classes { y[r * classes + c] = x[r * classes + c] - lse }
        }
    }

    /// dx = dy - softmax(x) * sum(dy)
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        for r in 0..<batch {
            let o = r * classes
            var sum: Float = 0
            for c in 0..<classes { sum += dy[o + c] }
            for c in 0..<classes { dx[o + c] = dy[o + c] - expf(y[o + c]) * sum }
        }
    }
}

/// torch.nn.Softmax(dim=1).
public final class Softmax: ShapePreserving {
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        graph.add("Softmax", [x], [("axis", .int(1))])
    }

    public let classes: Int
    public let shape: Shape
    public init(_ classes: Int) {
        self.classes = classes
        shape = Shape(classes)
    }
    public var typeName: String { "Softmax(dim=1)" }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        for r in 0..<batch { softmaxRow(x + r * classes, y + r * classes, classes) }
    }

    /// dx = y * (dy - sum(dy * y))
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        for r in 0..<batch {
            let o = r * classes
            var dot: Float = 0
            for c in 0..<classes { dot += dy[o + c] * y[o + c] }
            for c in 0..<classes { dx[o + c] = y[o + c] * (dy[o + c] - dot) }
        }
    }
}

@inline(__always)
public func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var m = -Float.infinity
    for i in 0..<n { m = max(m, x[i]) }
    var s: Float = 0
    for i in 0..<n { s += expf(x[i] - m) }
    return m + logf(s)
}

@inline(__always)
public func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var m = -Float.infinity
    for i in 0..<n { m = max(m, x[i]) }
    var s: Float = 0
    for i in 0..<n { let e = expf(x[i] - m); y[i] = e; s += e }
    let inv = 1 / s
    for i in 0..<n { y[i] *= inv }
}
