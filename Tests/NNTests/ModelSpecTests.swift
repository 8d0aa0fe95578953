import Engine
import NN
import XCTest

final class ModelSpecTests: XCTestCase {
    func testParsesMLP() throws {
        let spec = try ModelSpec(parsing: "mlp:512,512")
        XCTAssertEqual(spec.hidden, [512, 512])
        XCTAssertEqual(spec.activation, .relu)
        let tanh = try ModelSpec(parsing: "mlp:128:tanh:dropout=0.2")
        XCTAssertEqual(tanh.activation, .tanh)
        XCTAssertEqual(tanh.dropout, 0.2)
    }

    func testRejectsBadSpecs() {
        for bad in ["mlp:abc", "mlp:12,-3", "mlp:12:swish", "transformer:1", "", "mlp:1:dropout=1.5", "mlp"] {
            XCTAssertThrowsError(try ModelSpec(parsing: bad), bad) { error in
                XCTAssertTrue("\(error)".contains("--model"), "\(error)")
            }
        }
    }

    /// Names and shapes are the torch.nn.Sequential state_dict's, without a leading Flatten.
    /// The GEMMs the bench counts for pytorch/examples' CNN: by the definition (im2col), the issue's
    /// 72 MFLOP per sample for forward and backward; as run, the second convolution (32 -> 64, 3x3,
    /// Winograd) does 2.25x fewer, and the first (1 input channel) and the Linears are unchanged.
    func testCNNGEMMFlops() throws {
        let model = try ModelSpec(parsing: "cnn").build(inputShape: Shape(1, 28, 28), classes: 10, maxBatch: 4, seed: 1)
        let direct = model.gemms(batch: 4, direct: true).reduce(0) { $0 + $1.flops } / 4
        let run = model.gemms(batch: 4).reduce(0) { $0 + $1.flops } / 4
        XCTAssertEqual(direct / 1e6, 71.2, accuracy: 0.5, "MFLOP per sample, im2col")
        // conv2 by definition: 3 GEMMs of 2 x 64 x 288 x 576 per sample; as Winograd, 3 x 16 of 2 x 64 x 32 x 144.
        let conv2Direct = 3.0 * 2 * 64 * 288 * 576, conv2Winograd = 3.0 * 16 * 2 * 64 * 32 * 144
        XCTAssertEqual(conv2Direct / conv2Winograd, 2.25)
        XCTAssertEqual(direct - run, conv2Direct - conv2Winograd, accuracy: 1)
    }

    func testTorchStateDictNames() throws {
        let model = try ModelSpec(parsing: "mlp:512,512").build(inputShape: Shape(1, 28, 28), classes: 10, maxBatch: 2, seed: 1)
        XCTAssertEqual(model.store.entries.map(\.name), ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"])
        XCTAssertEqual(model.store.entries.map(\.shape), [[512, 784], [512], [512, 512], [512], [10, 512], [10]])
        XCTAssertEqual(model.parameterCount, 669_706)
        let withDropout = try ModelSpec(parsing: "mlp:32:dropout=0.5").build(inputShape: Shape(4), classes: 3, maxBatch: 2, seed: 1)
        XCTAssertEqual(withDropout.store.entries.map(\.name), ["0.weight", "0.bias", "3.weight", "3.bias"])
    }

    /// kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and so does the bias.
    func testLinearInitBounds() throws {
        let model = try ModelSpec(hidden: [64]).build(inputShape: Shape(100), classes: 10, maxBatch: 1, seed: 3)
        let w = model.store.entry(named: "0.weight")!
        let values = (0..<w.count).map { model.store.parameters[w.offset + $0] }
        XCTAssert(values.allSatisfy { abs($0) <= 0.1 })
        XCTAssertGreaterThan(values.map(abs).max()!, 0.09)
        let mean = values.reduce(0, +) / Float(values.count)
        XCTAssertEqual(mean, 0, accuracy: 0.005)
    }

    /// Each activation after a Linear is fused into it (and becomes a view); Dropout layers get
    /// distinct keys for their masks.
    func testActivationsFuseAndDropoutsAreKeyed() throws {
        let model = try ModelSpec(parsing: "mlp:8,8:tanh:dropout=0.1").build(inputShape: Shape(4), classes: 3, maxBatch: 2, seed: 1)
        let activations = model.layers.compactMap { $0 as? Activation }
        XCTAssertEqual(activations.count, 2)
        XCTAssertTrue(activations.allSatisfy(\.isView), "fused into the Linear before each")
        XCTAssertEqual(model.layers.compactMap { ($0 as? Linear)?.activation }, [.tanh, .tanh])
        XCTAssertEqual(model.layers.compactMap { ($0 as? Dropout)?.randomnessIndex }, [0, 1])
    }
}
