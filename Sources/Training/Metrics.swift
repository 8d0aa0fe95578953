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

/// The result of evaluating a model on a dataset.
public struct EvalResult {
    public var loss: Double
    public var confusion: ConfusionMatrix
    public var correct: Int { confusion.correct }
    public var total: Int { confusion.total }
    public var accuracy: Double { total > 0 ? Double(correct) / Double(total) : 0 }

    /// `Test set: Average loss: 0.1052, Accuracy: 9690/10000 (96.9%)`, as the PyTorch example prints.
    public func line(setName: String) -> String {
        String(format: "%@ set: Average loss: %.4f, Accuracy: %d/%d (%.1f%%)", setName.prefix(1).uppercased() + setName.dropFirst(),
               loss, correct, total, 100 * accuracy)
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

    public func eval(step: Int, epoch: Int, loss: Double, accuracy: Double) {
        write("{\"step\":\(step),\"epoch\":\(epoch),\"val_loss\":\(json(loss)),\"val_accuracy\":\(json(accuracy))}\n")
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
