import Data
import Engine
import NN

/// What a run learns, decided by the data's targets: classification (a class per sample) or
/// regression (floats per sample). The task owns the loss, what evaluation sums and reports, and
/// what "best" means; the trainer and the evaluator call it without knowing which it is.
public enum Task {
    case classification(names: [String], loss: Loss)
    case regression(names: [String], loss: ValueLoss)

    /// The task for `space` with `--loss` (nil: cross-entropy, or mse for regression).
    public init(space: TargetSpace, loss: LossKind?) throws {
        switch space {
        case .classes(let names):
            let kind = loss ?? .crossEntropy
            guard let l = kind.classLoss else {
                throw UsageError("--loss \(kind.rawValue) is a regression loss; this is a classification task (use cross-entropy, nll or mse)")
            }
            self = .classification(names: names, loss: l)
        case .values(let names):
            let kind = loss ?? .mse
            guard let l = kind.valueLoss else {
                throw UsageError("--loss \(kind.rawValue) is a classification loss; this is a regression task (use mse, l1 or huber)")
            }
            self = .regression(names: names, loss: l)
        }
    }

    /// The task for evaluating saved weights: a model trained with nll ends in LogSoftmax, whose
    /// logits under cross-entropy give the same loss.
    public init(evaluating space: TargetSpace, loss: LossKind?) throws {
        try self.init(space: space, loss: loss == .nll ? .crossEntropy : loss)
    }

    public var name: String { if case .classification = self { return "classification" } else { return "regression" } }
    public var lossName: String {
        switch self {
        case .classification(_, let l): return l.name
        case .regression(_, let l): return l.name
        }
    }
    /// The model's output width.
    public var width: Int {
        switch self {
        case .classification(let n, _), .regression(let n, _): return n.count
        }
    }

    /// The sum of the per-sample losses of rows `offset..<offset+batch` of `targets`, and the
    /// gradient of `gradScale * sum` with respect to `output` into `grad`.
    @inline(__always)
    public func loss(_ output: UnsafePointer<Float>, targets: TargetBuffer, offset: Int, batch: Int,
                     gradScale: Float, grad: UnsafeMutablePointer<Float>?) -> Double {
        switch self {
        case .classification(let names, let l):
            return l.evaluate(output, labels: targets.classes + offset, batch: batch, classes: names.count, gradScale: gradScale, grad: grad)
        case .regression(let names, let l):
            return l.evaluate(output, targets: targets.values + offset * names.count, batch: batch, width: names.count,
                              gradScale: gradScale, grad: grad)
        }
    }

    /// How many sums evaluation keeps: the loss, then the confusion counts, or per target the sums
    /// of squared and absolute errors and of the targets and their squares (for R²).
    public var evalSlots: Int {
        switch self {
        case .classification(let n, _): return 1 + n.count * n.count
        case .regression(let n, _): return 1 + 4 * n.count
        }
    }

    /// Adds a batch's loss and metric sums (rows 0..<batch of `targets`) into `totals`.
    public func accumulate(_ output: UnsafePointer<Float>, targets: TargetBuffer, batch: Int, into totals: inout [Double]) {
        totals[0] += loss(output, targets: targets, offset: 0, batch: batch, gradScale: 0, grad: nil)
        switch self {
        case .classification(let names, _):
            let c = names.count
            for r in 0..<batch { totals[1 + Int(targets.classes[r]) * c + argmax(output + r * c, c)] += 1 }
        case .regression(let names, _):
            let t = names.count
            for r in 0..<batch {
                for j in 0..<t {
                    let y = Double(targets.values[r * t + j]), d = Double(output[r * t + j]) - y
                    totals[1 + 4 * j] += d * d
                    totals[2 + 4 * j] += abs(d)
                    totals[3 + 4 * j] += y
                    totals[4 + 4 * j] += y * y
                }
            }
        }
    }

    /// The result of sums over a whole set of `count` samples.
    public func result(_ totals: [Double], count: Int) -> EvalResult {
        let n = Double(max(count, 1))
        switch self {
        case .classification(let names, _):
            var confusion = ConfusionMatrix(classes: names.count)
            confusion.counts = Array(totals[1...])
            return EvalResult(loss: totals[0] / n, count: count, metrics: .classification(confusion))
        case .regression(let names, _):
            let perTarget = (0..<names.count).map { j -> RegressionMetrics.Target in
                let sse = totals[1 + 4 * j], sumY = totals[3 + 4 * j], sumY2 = totals[4 + 4 * j]
                let sst = sumY2 - sumY * sumY / n
                return .init(name: names[j], mse: sse / n, mae: totals[2 + 4 * j] / n, r2: sst > 0 ? 1 - sse / sst : .nan)
            }
            return EvalResult(loss: totals[0] / n, count: count, metrics: .regression(RegressionMetrics(targets: perTarget)))
        }
    }
}

/// Per-target regression metrics over a set, as sklearn's mean_squared_error, mean_absolute_error
/// and r2_score; the summary values average over targets (sklearn's 'uniform_average').
public struct RegressionMetrics {
    public struct Target {
        public var name: String
        public var mse: Double
        public var mae: Double
        public var r2: Double
    }

    public var targets: [Target]
    public var mse: Double { targets.map(\.mse).reduce(0, +) / Double(max(targets.count, 1)) }
    public var mae: Double { targets.map(\.mae).reduce(0, +) / Double(max(targets.count, 1)) }
    public var r2: Double { targets.map(\.r2).reduce(0, +) / Double(max(targets.count, 1)) }

    /// One line per target, when there are several.
    public func render() -> String {
        let w = max(6, targets.map(\.name.count).max() ?? 0)
        func pad(_ s: String) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
        return (["\(pad("target"))          MSE          MAE       R²"] + targets.map {
            pad($0.name) + String(format: " %12.6g %12.6g %8.4f", $0.mse, $0.mae, $0.r2)
        }).joined(separator: "\n")
    }
}

@inline(__always)
public func argmax(_ x: UnsafePointer<Float>, _ n: Int) -> Int {
    var best = 0
    for i in 1..<n where x[i] > x[best] { best = i }
    return best
}

extension Task {
    public var isClassification: Bool { if case .classification = self { return true } else { return false } }
}
