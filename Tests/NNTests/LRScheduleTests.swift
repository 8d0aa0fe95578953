import Optim
import XCTest

/// `--lr-schedule` against torch.optim.lr_scheduler's closed forms (values computed in Python from
/// torch's formulas: StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, OneCycleLR).
final class LRScheduleTests: XCTestCase {
    func rates(_ spec: String, steps: [Int] = [], epochs: [Int] = [], total: Int = 10, warmup: Int = 0) throws -> [Double] {
        let s = try LRSchedule(parsing: spec)
        if !epochs.isEmpty { return epochs.map { Double(s.rate(base: 0.1, step: 0, epoch: $0, totalSteps: total)) } }
        return steps.map { Double(s.rate(base: 0.1, step: $0, epoch: 0, totalSteps: total, warmupSteps: warmup)) }
    }

    func assertClose(_ a: [Double], _ b: [Double], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-8 + 1e-6 * abs(y), "\(a) vs \(b)", file: file, line: line) }
    }

    func testEpochSchedules() throws {
        assertClose(try rates("step:2:0.5", epochs: [0, 1, 2, 3, 4]), [0.1, 0.1, 0.05, 0.05, 0.025])
        assertClose(try rates("step:1", epochs: [0, 1, 2]), [0.1, 0.01, 0.001])
        assertClose(try rates("multistep:1,3:0.1", epochs: [0, 1, 2, 3, 4]), [0.1, 0.01, 0.01, 0.001, 0.001])
        assertClose(try rates("exponential:0.9", epochs: [0, 3]), [0.1, 0.0729])
        assertClose(try rates("constant", epochs: [0, 7]), [0.1, 0.1])
    }

    func testStepSchedules() throws {
        assertClose(try rates("cosine:0.001", steps: [0, 3, 5, 10], total: 10), [0.1, 0.07959536998847742, 0.0505, 0.001])
        assertClose(try rates("onecycle", steps: [0, 10, 18, 19, 40, 63], total: 64),
                    [0.004, 0.059427008069933514, 0.09997139874645139, 0.09992134106552783, 0.052103316013915546, 4e-07])
        // Linear warm-up multiplies: (t + 1) / W for the first W steps.
        assertClose(try rates("constant", steps: [0, 1, 3, 4, 9], warmup: 4), [0.025, 0.05, 0.1, 0.1, 0.1])
        assertClose(try rates("cosine", steps: [0, 5], total: 10, warmup: 2), [0.05, 0.05])
    }

    func testParseErrors() {
        for bad in ["step", "step:0", "step:2:-1", "multistep:3,1", "multistep:a", "exponential", "cosine:-1", "onecycle:1.5",
                    "linear", "step:2:0.5:9"] {
            XCTAssertThrowsError(try LRSchedule(parsing: bad), bad) { XCTAssertTrue("\($0)".contains("invalid --lr-schedule '\(bad)'"), "\($0)") }
        }
        XCTAssertEqual(try LRSchedule(parsing: "step:3").description, "step:3:0.1")
        XCTAssertEqual(try LRSchedule(parsing: "onecycle").description, "onecycle:0.3")
    }
}
