import ArgumentParser
import Comm
import Data
import Engine
import Foundation
import NN
import Training

/// `ddp-train report`: the run as one self-contained HTML page (see `Report`). With `--weights`, the
/// model is evaluated on the training run's evaluation set (read from the weights file) for the
/// confusion matrix, per-class scores and a grid of samples with their predicted probabilities.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write one self-contained HTML report of a run: loss, lr and validation charts, the confusion matrix, samples with their predictions, the configuration.",
        discussion: "Open it in a browser; for a PNG: chromium --headless --screenshot=report.png --window-size=1000,2600 report.html")

    @Option(help: "The run's --metrics file (JSON lines).")
    var metrics: String
    @Option(help: "The run's weights (--save or best.safetensors), for the evaluation, the samples and the configuration.")
    var weights: String?
    @Option(help: "Where to write the page.")
    var out = "report.html"
    @Option(parsing: .unconditional, help: "How many evaluation samples to show.")
    var samples = 12

    func run() throws {
        var report = Report(title: "ddp-train: " + (metrics as NSString).lastPathComponent)
        try report.read(metrics: metrics)
        if let weights { try addModel(weights, to: &report) }
        try AtomicFile.write(Array(report.html().utf8), to: out)
        print("Wrote \(out)")
    }

    /// Evaluates the saved model on its run's evaluation set and records what the file says of itself.
    func addModel(_ weights: String, to report: inout Report) throws {
        let recorded = try Weights.description(in: weights)
        _ = BLASEnvironment.configureThreads(override: nil, localSize: 1)
        let splits = try DataSplits.load(recorded.data ?? DataSource(), fitted: recorded.preprocessing)
        let lossKind = recorded.loss.flatMap { LossKind(name: $0) }
        let task = try Task(evaluating: splits.eval.space, loss: lossKind)
        let batch = 1000
        let (net, _) = try Weights.loadModel(weights, recorded: recorded, inputShape: splits.eval.sampleShape, outputs: task.width, maxBatch: batch)
        let indices = UnsafeMutablePointer<Int32>.allocate(capacity: batch)
        defer { indices.deallocate() }
        let targets = TargetBuffer(capacity: batch, width: task.width)
        report.result = try Evaluator.evaluate(model: net, task: task, dataset: splits.eval, comm: LocalCommunicator(),
                                               indices: indices, targets: targets)
        report.classNames = splits.eval.classNames
        if task.isClassification {
            let n = min(samples, splits.eval.count)
            for i in 0..<n { indices[i] = Int32(i) }
            splits.eval.gather(indices, count: n, into: net.input, targets: targets)
            net.forward(batch: n, context: .eval)
            var p = [Float](repeating: 0, count: task.width)
            for r in 0..<n {
                p.withUnsafeMutableBufferPointer { softmaxRow(net.output + r * task.width, $0.baseAddress!, task.width) }
                let dims = splits.eval.sampleShape.dims
                let image = splits.eval.image(r).map { DecodedImage(width: dims[2], height: dims[1], channels: dims[0], pixels: $0) }
                report.samples.append(.init(image: image, truth: Int(targets.classes[r]), probabilities: p.map(Double.init)))
            }
        }
        report.configuration = [("weights", weights), ("model", recorded.model), ("task", recorded.task ?? "?"),
                                ("loss", recorded.loss ?? "default"), ("evaluated on", "\(splits.evalName) set, \(splits.eval.count) samples")]
        if let data = recorded.data, let json = try? JSONSerialization.jsonObject(with: JSONEncoder().encode(data)) as? [String: Any] {
            report.configuration += json.keys.sorted().map { ("data." + $0, "\(json[$0]!)") }
        }
        // The resolved flags, when the run wrote them beside the weights.
        let yaml = (weights as NSString).deletingPathExtension + ".yaml"
        if let text = try? String(contentsOfFile: yaml, encoding: .utf8) {
            report.configuration += text.split(separator: "\n").compactMap { line in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                return value == "null" ? nil : ("--" + line[..<colon], value)
            }
        }
    }
}
