import Data
import Foundation

/// Counts of (true class, predicted class).
public struct ConfusionMatrix {
    public let classes: Int
    public var counts: [Double]

    public init(classes: Int) {
        self.classes = classes
        counts = [Double](repeating: 0, count: classes * classes)
    }

    public mutating func add(truth: Int, predicted: Int) { counts[truth * classes + predicted] += 1 }
    public subscript(truth: Int, predicted: Int) -> Int { Int(counts[truth * classes + predicted]) }
    public var total: Int { Int(counts.reduce(0, +)) }
    public var correct: Int { (0..<classes).reduce(0) { $0 + self[$1, $1] } }

    /// A table with true classes as rows and predictions as columns, and per-class recall.
    public func render(classNames: [String]) -> String {
        let nameWidth = max(5, classNames.map(\.count).max() ?? 1)
        let cell = max(5, String(counts.map { Int($0) }.max() ?? 0).count + 1)
        func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
            s.count >= w ? s : (left ? s + String(repeating: " ", count: w - s.count) : String(repeating: " ", count: w - s.count) + s)
        }
        var lines = ["Confusion matrix (rows: true class, columns: predicted):"]
        var header = pad("", nameWidth + 2, left: true)
        for c in 0..<classes { header += pad(String(c), cell) }
        header += "   recall"
        lines.append(header)
        for t in 0..<classes {
            var row = pad(classNames[t], nameWidth, left: true) + "  "
            var rowTotal = 0
            for p in 0..<classes { row += pad(String(self[t, p]), cell); rowTotal += self[t, p] }
            let recall = rowTotal > 0 ? 100 * Double(self[t, t]) / Double(rowTotal) : 0
            row += String(format: "   %5.1f%%", recall)
            lines.append(row)
        }
        return lines.joined(separator: "\n")
    }
}

/// The result of evaluating a model on a dataset: the mean loss and the task's metrics.
public struct EvalResult {
    public enum Metrics {
        case classification(ConfusionMatrix)
        case regression(RegressionMetrics)
    }

    public var loss: Double
    public var count: Int
    public var metrics: Metrics

    public var confusion: ConfusionMatrix? { if case .classification(let c) = metrics { return c } else { return nil } }
    public var regression: RegressionMetrics? { if case .regression(let r) = metrics { return r } else { return nil } }
    public var correct: Int { confusion?.correct ?? 0 }
    public var accuracy: Double { count > 0 ? Double(correct) / Double(count) : 0 }

    /// What "best" maximizes: accuracy for classification, minus the loss for regression.
    public var score: Double {
        switch metrics {
        case .classification: return accuracy
        case .regression: return -loss
        }
    }

    /// `Test set: Average loss: 0.1052, Accuracy: 9690/10000 (96.9%)`, as the PyTorch example prints;
    /// for regression `Test set: Average loss: 2900.1, MSE: 2900.1, MAE: 43.2, R²: 0.4526`.
    public func line(setName: String) -> String {
        let set = setName.prefix(1).uppercased() + setName.dropFirst()
        switch metrics {
        case .classification:
            return String(format: "%@ set: Average loss: %.4f, Accuracy: %d/%d (%.1f%%)", set, loss, correct, count, 100 * accuracy)
        case .regression(let r):
            return String(format: "%@ set: Average loss: %.6g, MSE: %.6g, MAE: %.6g, R²: %.4f (%d samples)", set, loss, r.mse, r.mae, r.r2, count)
        }
    }

    /// The end-of-run table: the confusion matrix, or per-target metrics when there are several.
    public func details(names: [String]) -> String? {
        switch metrics {
        case .classification(let c): return c.render(classNames: names)
        case .regression(let r): return r.targets.count > 1 ? r.render() : nil
        }
    }

    /// The metrics file's fields: val_loss and val_accuracy, or val_mse, val_mae and val_r2.
    public var fields: [(String, Double)] {
        switch metrics {
        case .classification: return [("val_loss", loss), ("val_accuracy", accuracy)]
        case .regression(let r): return [("val_loss", loss), ("val_mse", r.mse), ("val_mae", r.mae), ("val_r2", r.r2)]
        }
    }
}

/// The `--metrics` JSON Lines file: one object per optimizer step and one per evaluation, each
/// valid JSON (a non-finite number is written as null).
public final class MetricsLog {
    private let handle: FileHandle

    /// A fresh file, or with `keepingThrough: S` (a resume from step S) the existing file cut back to
    /// its lines of steps up to S: the steps after S are trained again and logged once more, so each
    /// step appears once. A torn last line (a crash mid-write) goes too.
    public init(path: String, keepingThrough resumeStep: Int?) throws {
        let fm = FileManager.default
        var kept = Data()
        if let s = resumeStep, let old = fm.contents(atPath: path) {
            for line in old.split(separator: UInt8(ascii: "\n")) {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { continue }
                if let step = object["step"] as? Int, step > s { continue }
                kept.append(Data(line))
                kept.append(UInt8(ascii: "\n"))
            }
        }
        do {
            try AtomicFile.write([UInt8](kept), to: path)
        } catch {
            throw UsageError("cannot write --metrics \(path): \(error)")
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw UsageError("cannot open --metrics \(path)") }
        h.seekToEndOfFile()
        handle = h
    }

    public func step(step: Int, epoch: Int, loss: Double, lr: Float, samplesPerSecond: Double) {
        write("{\"step\":\(step),\"epoch\":\(epoch),\"loss\":\(json(loss)),\"lr\":\(json(Double(lr))),"
              + "\"samples_per_s\":\(json(samplesPerSecond, "%.1f"))}\n")
    }

    public func eval(step: Int, epoch: Int, result: EvalResult) {
        let fields = result.fields.map { "\"\($0.0)\":\(json($0.1))" }.joined(separator: ",")
        write("{\"step\":\(step),\"epoch\":\(epoch),\(fields)}\n")
    }

    /// A JSON number, or null for NaN and infinities (JSON has no spelling for them).
    private func json(_ x: Double, _ format: String = "%.6g") -> String {
        x.isFinite ? String(format: format, x) : "null"
    }

    private var failed = false

    /// A failed write (a full disk) is reported once; training goes on without metrics.
    private func write(_ s: String) {
        guard !failed else { return }
        do {
            try handle.write(contentsOf: Data(s.utf8))
        } catch {
            failed = true
            warn("warning: metrics write failed (\(posixReason(error))); training goes on without metrics")
        }
    }

    public func close() { try? handle.close() }
}
