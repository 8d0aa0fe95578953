import ArgumentParser
import Data
import Engine
import Foundation
import NN
import Training

/// `ddp-train export --weights W --onnx model.onnx`: the saved model as ONNX (see `ONNXExport`),
/// built from what the weights file records (model, input shape, outputs).
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export saved weights as an ONNX model (input 'input': (N, sample shape), output 'output': the logits).",
        discussion: "The input is preprocessed as in training (pixels scaled to [0,1] and --normalize; table rows standardized): the weights file records how.")

    @Option(help: "Weights file (safetensors) written by --save.")
    var weights: String
    @Option(help: "The ONNX file to write.")
    var onnx: String

    func run() throws {
        let recorded = try Weights.description(in: weights)
        guard let prep = recorded.preprocessing else {
            throw ValidationError("\(weights) records no input shape (saved by an older ddp-train?); train it again with --save")
        }
        let lossKind = recorded.loss.flatMap { LossKind(name: $0) }
        let (net, spec) = try Weights.loadModel(weights, recorded: recorded, inputShape: Shape(prep.sampleShape), outputs: prep.space.width,
                                                maxBatch: 1, logSoftmax: lossKind == .nll)
        var metadata = recorded.metadata
        metadata.removeValue(forKey: "format")
        try AtomicFile.write(try ONNXExport.encode(net, metadata: metadata), to: onnx)
        print("Wrote \(onnx): \(spec), input (N, \(prep.sampleShape.map(String.init).joined(separator: ", "))), output (N, \(prep.space.width))")
    }
}
