import Engine
import Glibc

/// A loss over a batch of model outputs (B, C) and integer class labels (B).
///
/// `evaluate` returns the *sum* of the per-sample losses and, when `grad` is given, writes the
/// gradient of `gradScale * sum` with respect to the outputs. With `gradScale = 1/globalBatch` on
/// every rank, the summed all-reduce of these gradients is exactly the gradient of the global mean.
public protocol Loss {
    var name: String { get }
    func evaluate(_ output: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int,
                  gradScale: Float, grad: UnsafeMutablePointer<Float>?) -> Double
}

/// torch.nn.CrossEntropyLoss on logits, with log-softmax fused in: one pass per row.
public struct CrossEntropyLoss: Loss {
    public init() {}
    public var name: String { "cross-entropy" }

    public func evaluate(_ output: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int,
                         gradScale: Float, grad: UnsafeMutablePointer<Float>?) -> Double {
        var total = 0.0
        for r in 0..<batch {
            let x = output + r * classes
            let t = Int(labels[r])
            let lse = logSumExp(x, classes)
            total += Double(lse - x[t])
            if let grad {
                let g = grad + r * classes
                for c in 0..<classes { g[c] = expf(x[c] - lse) * gradScale }
                g[t] -= gradScale
            }
        }
        return total
    }
}

/// torch.nn.NLLLoss on log-probabilities (a model ending in LogSoftmax).
public struct NLLLoss: Loss {
    public init() {}
    public var name: String { "nll" }

    public func evaluate(_ output: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int,
                         gradScale: Float, grad: UnsafeMutablePointer<Float>?) -> Double {
        var total = 0.0
        for r in 0..<batch {
            let t = Int(labels[r])
            total -= Double(output[r * classes + t])
            if let grad {
                (grad + r * classes).update(repeating: 0, count: classes)
                grad[r * classes + t] = -gradScale
            }
        }
        return total
    }
}

/// torch.nn.MSELoss against one-hot targets, mean over every element: the per-sample loss is
/// sum_c (y_c - t_c)^2 / C, so the mean over samples equals MSELoss's mean over B*C elements.
public struct MSELoss: Loss {
    public init() {}
    public var name: String { "mse" }

    public func evaluate(_ output: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int,
                         gradScale: Float, grad: UnsafeMutablePointer<Float>?) -> Double {
        var total = 0.0
        let invC = 1 / Float(classes)
        for r in 0..<batch {
            let t = Int(labels[r])
            var s: Float = 0
            for c in 0..<classes {
                let d = output[r * classes + c] - (c == t ? 1 : 0)
                s += d * d
                grad?[r * classes + c] = 2 * d * invC * gradScale
            }
            total += Double(s * invC)
        }
        return total
    }
}

/// `--loss`: cross-entropy, nll and mse for classification (mse against one-hot targets); mse, l1
/// and huber for regression.
public enum LossKind: String, CaseIterable, Sendable {
    case crossEntropy = "cross-entropy", nll, mse, l1, huber

    public init?(name: String) {
        switch name.lowercased() {
        case "cross-entropy", "crossentropy", "ce": self = .crossEntropy
        case "nll": self = .nll
        case "mse": self = .mse
        case "l1", "mae": self = .l1
        case "huber": self = .huber
        default: return nil
        }
    }

    public var forClassification: Bool { self != .l1 && self != .huber }
    public var forRegression: Bool { self == .mse || self == .l1 || self == .huber }

    /// The classification loss of this kind (cross-entropy, nll, mse against one-hot targets).
    public var classLoss: Loss? {
        switch self {
        case .crossEntropy: return CrossEntropyLoss()
        case .nll: return NLLLoss()
        case .mse: return MSELoss()
        case .l1, .huber: return nil
        }
    }

    /// The regression loss of this kind (mse, l1, huber).
    public var valueLoss: ValueLoss? { ValueLoss.Kind(rawValue: rawValue).map(ValueLoss.init) }
}

/// A loss over a batch of model outputs (B, T) and float targets (B, T), for regression. As with
/// `Loss`, `evaluate` returns the sum of per-sample losses and writes the gradient of
/// `gradScale * sum`. A sample's loss is the mean over its T values, so the mean over samples is
/// torch's `reduction='mean'` over all B*T elements.
public struct ValueLoss: Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        /// torch.nn.MSELoss: d^2.
        case mse
        /// torch.nn.L1Loss: |d|, gradient sign(d) (0 at 0, as torch).
        case l1
        /// torch.nn.HuberLoss(delta=1): d^2/2 inside |d| < 1, |d| - 1/2 outside.
        case huber
    }

    public let kind: Kind
    public init(_ kind: Kind) { self.kind = kind }
    public var name: String { kind.rawValue }

    public func evaluate(_ output: UnsafePointer<Float>, targets: UnsafePointer<Float>, batch: Int, width: Int,
                         gradScale: Float, grad: UnsafeMutablePointer<Float>?) -> Double {
        var total = 0.0
        let invT = 1 / Float(width)
        for i in 0..<(batch * width) {
            let d = output[i] - targets[i]
            let a = abs(d)
            let value: Float, slope: Float
            switch kind {
            case .mse: value = d * d; slope = 2 * d
            case .l1: value = a; slope = d > 0 ? 1 : (d < 0 ? -1 : 0)
            case .huber: (value, slope) = a < 1 ? (0.5 * d * d, d) : (a - 0.5, d > 0 ? 1 : -1)
            }
            total += Double(value * invT)
            grad?[i] = slope * invT * gradScale
        }
        return total
    }
}
