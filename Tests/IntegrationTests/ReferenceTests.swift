import Foundation
import XCTest

/// Training as a whole against an independent implementation of PyTorch's semantics: numpy runs
/// Linear/ReLU layers, mean cross-entropy and torch.optim.SGD's momentum rule from the same initial
/// weights on the same MNIST batches, and the weights after 50 steps must agree.
final class ReferenceTests: XCTestCase {
    static let script = #"""
    import gzip, sys
    import numpy as np
    from safetensors.numpy import load_file, save_file

    data_dir, init_path, out_path, steps, batch, lr, mu = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
    def idx(path, header):
        raw = gzip.open(path).read()
        return np.frombuffer(raw, dtype=np.uint8, offset=header)
    x_all = idx(data_dir + "/train-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    y_all = idx(data_dir + "/train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    w = {k: v.astype(np.float32) for k, v in load_file(init_path).items()}
    layers = sorted({int(k.split(".")[0]) for k in w})
    buf = {}
    f32 = np.float32
    for step in range(steps):
        lo = step * batch
        x = (x_all[lo:lo + batch].astype(f32) / f32(255))        # ToTensor: p / 255
        y = y_all[lo:lo + batch]
        acts = [x]
        for i, l in enumerate(layers):                            # Linear, ReLU between
            z = acts[-1] @ w[f"{l}.weight"].T + w[f"{l}.bias"]
            acts.append(np.maximum(z, 0) if i < len(layers) - 1 else z)
        z = acts[-1]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        g = p.copy(); g[np.arange(len(y)), y] -= 1; g /= f32(len(y))   # d mean CE / d logits
        grads = {}
        for i in reversed(range(len(layers))):
            l = layers[i]
            grads[f"{l}.weight"] = g.T @ acts[i]
            grads[f"{l}.bias"] = g.sum(axis=0)
            if i > 0:
                g = (g @ w[f"{l}.weight"]) * (acts[i] > 0)
        for k in w:                                               # torch.optim.SGD, momentum, dampening 0
            buf[k] = grads[k].copy() if step == 0 else f32(mu) * buf[k] + grads[k]
            w[k] = w[k] - f32(lr) * buf[k]
    save_file(w, out_path)
    """#

    func testFiftySGDStepsMatchNumpyReferenceOfTorchSemantics() throws {
        let dir = temporaryDirectory()
        let model = ["--model", "mlp:128,64", "--no-shuffle", "--batch-size", "64", "--log-every", "0"]
        // lr 0 leaves the weights as initialized: that file is the shared starting point.
        let initRun = Harness.run(model + ["--max-steps", "1", "--lr", "0", "--save", dir + "/init.safetensors"])
        XCTAssertEqual(initRun.status, 0, initRun.stderr)
        let ours = Harness.run(model + ["--max-steps", "50", "--lr", "0.05", "--momentum", "0.9",
                                        "--init-weights", dir + "/init.safetensors", "--save", dir + "/ours.safetensors"])
        XCTAssertEqual(ours.status, 0, ours.stderr)

        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", Self.script, Harness.mnist, dir + "/init.safetensors", dir + "/ref.safetensors",
                            "50", "64", "0.05", "0.9"]
        let err = Pipe()
        python.standardError = err
        try python.run()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()
        if python.terminationStatus != 0 && errText.contains("No module named") && ProcessInfo.processInfo.environment["DDP_REQUIRE_PYTHON"] != "1" {
            throw XCTSkip("python3 lacks numpy or safetensors; Scripts/test.sh installs them")
        }
        XCTAssertEqual(python.terminationStatus, 0, errText)
        let reference = try Harness.weights(dir + "/ref.safetensors")
        let trained = try Harness.weights(dir + "/ours.safetensors")
        let start = try Harness.weights(dir + "/init.safetensors")
        let moved = Harness.maxAbsDifference(start, reference)
        let diff = Harness.maxAbsDifference(trained, reference)
        print("numpy reference: weights moved by up to \(moved); ddp-train differs from the reference by at most \(diff)")
        XCTAssertGreaterThan(moved, 0.01, "training changed the weights")
        XCTAssertLessThan(diff, 1e-4, "float32 rounding only")
    }
}
