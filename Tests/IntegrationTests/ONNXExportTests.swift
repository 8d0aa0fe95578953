import Data
import Foundation
import XCTest

/// `ddp-train export --onnx` for each kind of layer the engine builds: the onnx package's checker
/// accepts the file, and onnxruntime on the same inputs gives the class probabilities that
/// `ddp-train predict` prints, within 1e-5. Skipped without onnx and onnxruntime (pip) unless
/// DDP_REQUIRE_PYTHON=1.
final class ONNXExportTests: XCTestCase {
    static let script = """
        import sys, numpy as np, onnx, onnxruntime as ort
        model_path, inputs_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
        onnx.checker.check_model(onnx.load(model_path), full_check=True)
        session = ort.InferenceSession(model_path, providers=['CPUExecutionProvider'])
        shape = [d if isinstance(d, int) else n for d in session.get_inputs()[0].shape]
        x = np.fromfile(inputs_path, dtype='<f4').reshape(shape)
        y = session.run(['output'], {'input': x})[0].astype(np.float64)
        p = np.exp(y - y.max(axis=1, keepdims=True)); p /= p.sum(axis=1, keepdims=True)
        rows = [l.split(',') for l in open(sys.argv[4]).read().split('\\n')[1:] if l]
        ours = np.array([[float(v) for v in r[2:]] for r in rows])
        print(float(np.abs(p - ours).max()))
        """

    func testExportedModelsRunInOnnxRuntimeAsPredictDoes() throws {
        let probe = Harness.runCommand(["python3", "-c", "import onnx, onnxruntime"])
        if probe.status != 0 {
            if ProcessInfo.processInfo.environment["DDP_REQUIRE_PYTHON"] == "1" { XCTFail("no onnx/onnxruntime: \(probe.stderr)") }
            throw XCTSkip("python3 lacks onnx and onnxruntime (Scripts/test.sh installs them)")
        }
        let png = (Harness.packageRoot as NSString).deletingLastPathComponent + "/shared/data/mnist-png"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: png), "no \(png)")
        let dir = temporaryDirectory()
        // Eight test images, and the model inputs they become: pixel / 255, normalized.
        let files = try (0..<8).map { k -> String in
            let c = String(k)
            return png + "/test/\(c)/" + (try FileManager.default.contentsOfDirectory(atPath: png + "/test/" + c).sorted()[0])
        }
        var inputs: [Float] = []
        for f in files { inputs += try ImageFile.decode(path: f, channels: 1).pixels.map { (Float($0) / 255 - 0.1307) / 0.3081 } }
        try inputs.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/inputs.f32")) }

        let models: [(String, [String])] = [
            ("mlp:64", []), ("cnn", []), ("lenet5", []), ("resnet8", []),
            ("conv(4,3,padding=1),bn,tanh,avgpool(2),dropout2d(0.1),gap,flatten,linear(16),bn,sigmoid,dropout(0.2),linear(10)", ["--loss", "nll"]),
        ]
        for (spec, extra) in models {
            let w = dir + "/w.safetensors", onnx = dir + "/m.onnx", csv = dir + "/p.csv"
            let train = Harness.run(["--dataset", "images:" + png, "--normalize", "0.1307,0.3081", "--model", spec, "--max-steps", "10",
                                     "--batch-size", "32", "--log-every", "0", "--save", w] + extra)
            XCTAssertEqual(train.status, 0, "\(spec): \(train.stderr)")
            let export = Harness.run(["export", "--weights", w, "--onnx", onnx])
            XCTAssertEqual(export.status, 0, "\(spec): \(export.stderr)")
            let predict = Harness.run(["predict", "--weights", w, "--out", csv] + files)
            XCTAssertEqual(predict.status, 0, "\(spec): \(predict.stderr)")
            let r = Harness.runCommand(["python3", "-c", Self.script, onnx, dir + "/inputs.f32", String(files.count), csv], timeout: 300)
            XCTAssertEqual(r.status, 0, "\(spec): \(r.stderr)")
            let difference = Double(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .infinity
            print("onnxruntime vs predict, \(spec): largest probability difference \(difference)")
            XCTAssertLessThan(difference, 1e-5, spec)
        }
    }
}
