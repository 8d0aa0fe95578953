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

/// The `--metrics` JSON Lines file: one object per optimizer step and one per evaluation.
public final class MetricsLog {
    private let handle: FileHandle

    public init(path: String, append: Bool) throws {
        let fm = FileManager.default
        if !append || !fm.fileExists(atPath: path) {
            guard fm.createFile(atPath: path, contents: nil) else { throw TrainingError("cannot create metrics file \(path)") }
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw TrainingError("cannot open metrics file \(path)") }
        h.seekToEndOfFile()
        handle = h
    }

    public func step(step: Int, epoch: Int, loss: Double, lr: Float, samplesPerSecond: Double) {
        write(String(format: "{\"step\":%d,\"epoch\":%d,\"loss\":%.6g,\"lr\":%.6g,\"samples_per_s\":%.1f}\n",
                     step, epoch, loss, Double(lr), samplesPerSecond))
    }

    public func eval(epoch: Int, loss: Double, accuracy: Double) {
        write(String(format: "{\"epoch\":%d,\"val_loss\":%.6g,\"val_accuracy\":%.6g}\n", epoch, loss, accuracy))
    }

    private var failed = false

    /// A failed write (a full disk) is reported once; training goes on without metrics.
    private func write(_ s: String) {
        guard !failed else { return }
        do {
            try handle.write(contentsOf: Data(s.utf8))
        } catch {
            failed = true
            let posix = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError).map { String(cString: strerror(Int32($0.code))) }
            warn("warning: metrics write failed (\(posix ?? "\(error)")); training goes on without metrics")
        }
    }

    public func close() { try? handle.close() }
}

public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
