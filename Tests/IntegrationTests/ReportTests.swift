import Data
import Foundation
import XCTest

/// `ddp-train report` end to end: the page has its charts, heat map, per-class table, samples and
/// configuration, and headless Chromium (Debian's chromium, which Scripts/test.sh installs) draws
/// them: the screenshot holds the loss line's color and the heat map's blue.
final class ReportTests: XCTestCase {
    func testReportIsDrawnByChromium() throws {
        let dir = temporaryDirectory()
        let train = Harness.run(["--model", "mlp:32", "--epochs", "2", "--batch-size", "32", "--log-every", "0",
                                 "--metrics", dir + "/run.jsonl", "--save", dir + "/w.safetensors"], np: 2)
        XCTAssertEqual(train.status, 0, train.stderr)
        let r = Harness.run(["report", "--metrics", dir + "/run.jsonl", "--weights", dir + "/w.safetensors", "--out", dir + "/report.html"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let html = try String(contentsOfFile: dir + "/report.html", encoding: .utf8)
        for piece in ["Training loss", "Learning rate", "val_accuracy", "Confusion matrix", "<th>precision</th>",
                      "data:image/png;base64,", "<th>--model</th><td>mlp:32</td>", "<polyline"] {
            XCTAssertTrue(html.contains(piece), "the report has \(piece)")
        }
        XCTAssertEqual(html.components(separatedBy: "class=\"sample\"").count - 1, 12, "12 samples")
        XCTAssertFalse(html.contains("http://") && html.contains("<script"), "self-contained")

        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let chromium else {
            if ProcessInfo.processInfo.environment["DDP_REQUIRE_CHROMIUM"] == "1" { XCTFail("no chromium (apt-get install chromium)") }
            throw XCTSkip("no headless chromium: the page was checked, not drawn")
        }
        let shot = Harness.runCommand([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                       "--screenshot=" + dir + "/report.png", "--window-size=1000,2600", "file://" + dir + "/report.html"],
                                      timeout: 180)
        XCTAssertEqual(shot.status, 0, shot.stderr)
        let image = try ImageFile.decode(path: dir + "/report.png", channels: 3)
        let plane = image.width * image.height
        func count(_ r: Int, _ g: Int, _ b: Int) -> Int {
            (0..<plane).filter { abs(Int(image.pixels[$0]) - r) < 12 && abs(Int(image.pixels[plane + $0]) - g) < 12
                && abs(Int(image.pixels[2 * plane + $0]) - b) < 12 }.count
        }
        let lossLine = count(0x99, 0xAA, 0xBB)
        // Heat-map cells holding most of their row: blue, red and green well below it.
        let heat = (0..<plane).filter { image.pixels[2 * plane + $0] > 240 && image.pixels[$0] < 150 && image.pixels[plane + $0] < 150 }.count
        print("report screenshot \(image.width)x\(image.height): \(lossLine) loss-line pixels, \(heat) heat-map pixels")
        XCTAssertGreaterThan(lossLine, 300, "the loss chart is drawn")
        XCTAssertGreaterThan(heat, 1000, "the confusion matrix is drawn")
    }
}
