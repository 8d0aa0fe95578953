import ArgumentParser
import Data
import Engine
import Foundation
import NN
import Training

/// `ddp-train predict`: runs saved weights on new inputs with the training run's preprocessing, which
/// the weights file records (table schema and standardization, image size and channels,
/// normalization, class names). Inputs are a CSV of table rows or image files; the output is a CSV
/// with one row per input. `--index N` shows one sample of the evaluation set instead.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict with saved weights: a CSV of table rows or image files in, a CSV of predictions out.",
        discussion: """
          ddp-train predict --weights w.safetensors rows.csv              (a table: classes or values)
          ddp-train predict --weights w.safetensors a.png b.jpg --out p.csv
          ddp-train predict --weights w.safetensors --index 7             (one evaluation sample, shown)
        Classification writes input,predicted,p_CLASS...; regression writes input,TARGET...
        """)

    @OptionGroup var saved: WeightsOptions
    @Argument(help: "A CSV of rows with the training table's feature columns, or image files.")
    var inputs: [String] = []
    @Option(help: "Write the predictions here (default: standard output).")
    var out: String?
    @Option(help: "Show sample N of the evaluation set (the training run's test or validation set) instead.")
    var index: Int?
    @OptionGroup var data: DataOptions

    func validate() throws {
        if inputs.isEmpty && index == nil { throw ValidationError("give inputs (a CSV of rows or image files) or --index N") }
        if !inputs.isEmpty && index != nil { throw ValidationError("give inputs or --index, not both") }
    }

    func run() throws {
        let recorded = try saved.description()
        _ = BLASEnvironment.configureThreads(override: 1, localSize: 1)
        if let index { return try show(index: index, recorded: recorded) }
        guard let prep = recorded.preprocessing, let source = recorded.data else {
            throw ValidationError("\(saved.weights) records no preprocessing (saved by an older ddp-train?); use --index with data options")
        }
        let task = try Task(space: prep.space, loss: nil)
        let (data, names) = try inputDataset(prep: prep, source: source)
        let maxBatch = 256
        let (net, _) = try saved.load(inputShape: Shape(prep.sampleShape), task: task, recorded: recorded, maxBatch: maxBatch)
        let width = task.width
        var lines = [(["input"] + (prep.space.isClassification ? ["predicted"] + prep.space.names.map { "p_" + $0 } : prep.space.names))
            .map(csvField).joined(separator: ",")]
        var probabilities = [Float](repeating: 0, count: width)
        let unused = TargetBuffer(capacity: maxBatch, width: width)
        var start = 0
        while start < names.count {
            let k = min(maxBatch, names.count - start)
            let batch = (0..<Int32(k)).map { $0 + Int32(start) }
            data.gather(batch, count: k, into: net.input, targets: unused)
            net.forward(batch: k, context: .eval)
            for r in 0..<k {
                let out = net.output + r * width
                var fields = [csvField(names[start + r])]
                if prep.space.isClassification {
                    probabilities.withUnsafeMutableBufferPointer { softmaxRow(out, $0.baseAddress!, width) }
                    fields.append(csvField(prep.space.names[argmax(out, width)]))
                    fields += probabilities.map { String(format: "%.6g", $0) }
                } else {
                    fields += (0..<width).map { String(format: "%.7g", out[$0]) }
                }
                lines.append(fields.joined(separator: ","))
            }
            start += k
        }
        let text = lines.joined(separator: "\n") + "\n"
        if let out {
            try AtomicFile.write(Array(text.utf8), to: out)
            print("Wrote \(names.count) predictions to \(out)")
        } else {
            print(text, terminator: "")
        }
    }

    /// The inputs as a dataset with the training run's preprocessing (the table schema, or the image
    /// size, channels and normalization), and a name for each sample. Its targets are placeholders.
    func inputDataset(prep: Preprocessing, source: DataSource) throws -> (Dataset, [String]) {
        if let schema = prep.table {
            guard inputs.count == 1 else { throw ValidationError("a table model predicts from one CSV of rows; got \(inputs.count) files") }
            let (count, rows) = try schema.encodeInputs(path: inputs[0])
            guard count > 0 else { throw DataError("\(inputs[0]): no rows to predict") }
            let targets: Dataset.Targets = prep.space.isClassification ? .classes([Int32](repeating: 0, count: count))
                : .values([Float](repeating: 0, count: count * prep.space.width))
            let data = try Dataset(name: "input", sampleShape: Shape(prep.sampleShape), space: prep.space, samples: .floats(rows), targets: targets)
            return (data, (1...count).map { "row \($0)" })
        }
        guard prep.sampleShape.count == 3, let first = prep.space.names.first else {
            throw ValidationError("\(saved.weights): unknown input shape \(prep.sampleShape)")
        }
        let size = Array(prep.sampleShape[1...])
        let entries = inputs.map { ImageFolder.Entry(path: $0, label: first) }
        let data = try ImageFolder.load(entries, classNames: prep.space.names, channels: prep.sampleShape[0],
                                        size: source.imageSize != nil ? size : nil, name: "input")
        guard data.sampleShape.dims == prep.sampleShape else {
            throw DataError("\(inputs[0]): images are \(data.sampleShape.dims[1])x\(data.sampleShape.dims[2]), the model was trained on \(size[0])x\(size[1]) images")
        }
        data.normalization = source.normalize ?? .identity
        return (data, inputs)
    }

    /// One sample of the evaluation set, drawn (images) and with the class probabilities as bars.
    func show(index: Int, recorded: Weights.Description) throws {
        let splits = try DataSplits.load(try data.source(over: recorded.data), fitted: recorded.preprocessing)
        guard index >= 0 && index < splits.eval.count else {
            throw ValidationError("invalid --index \(index): the \(splits.evalName) set has samples 0..<\(splits.eval.count)")
        }
        let task = try Task(space: splits.eval.space, loss: nil)
        let (net, _) = try saved.load(inputShape: splits.eval.sampleShape, task: task, recorded: recorded, maxBatch: 1)
        var idx = Int32(index)
        let targets = TargetBuffer(capacity: 1, width: task.width)
        splits.eval.gather(&idx, count: 1, into: net.input, targets: targets)
        net.forward(batch: 1, context: .eval)
        if let pixels = splits.eval.image(index) { print(asciiArt(pixels, side: splits.eval.sampleShape.dims.last ?? 28)) }
        let names = splits.eval.classNames
        guard splits.eval.space.isClassification else {
            print("Sample \(index) of the \(splits.evalName) set:")
            for (j, name) in names.enumerated() {
                print(String(format: "  %@: predicted %.6g, true %.6g", name, net.output[j], targets.values[j]))
            }
            return
        }
        let label = Int(targets.classes[0])
        var probs = [Float](repeating: 0, count: task.width)
        probs.withUnsafeMutableBufferPointer { softmaxRow(net.output, $0.baseAddress!, task.width) }
        let predicted = argmax(net.output, task.width)
        print("Sample \(index) of the \(splits.evalName) set: true class \(names[label])")
        print(String(format: "Predicted: %@ (probability %.4f)%@", names[predicted], probs[predicted], predicted == label ? "" : "  [wrong]"))
        print("Class probabilities:")
        let width = max(11, names.map(\.count).max()!)
        for (i, p) in probs.enumerated() {
            let bar = String(repeating: "#", count: Int((p * 40).rounded()))
            print(String(format: "  %@ %.4f %@", names[i].padding(toLength: width, withPad: " ", startingAt: 0), p, bar))
        }
    }

    func asciiArt(_ pixels: [UInt8], side: Int) -> String {
        let ramp = Array(" .:-=+*#%@")
        let px = Array(pixels)
        var rows: [String] = []
        for r in stride(from: 0, to: min(px.count / side, side), by: 2) {
            rows.append(String((0..<side).map { ramp[Int(px[r * side + $0]) * (ramp.count - 1) / 255] }))
        }
        return rows.joined(separator: "\n")
    }

    /// A CSV field, quoted when it needs to be.
    func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
