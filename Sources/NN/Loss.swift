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

public enum LossKind: String, CaseIterable, Sendable {
    case crossEntropy = "cross-entropy", nll, mse

    public init?(name: String) {
        switch name.lowercased() {
        case "cross-entropy", "crossentropy", "ce": self = .crossEntropy
        case "nll": self = .nll
        case "mse": self = .mse
        default: return nil
        }
    }

    public func make() -> Loss {
        switch self {
        case .crossEntropy: return CrossEntropyLoss()
        case .nll: return NLLLoss()
        case .mse: return MSELoss()
        }
    }
}
