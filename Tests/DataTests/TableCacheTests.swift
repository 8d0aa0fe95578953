import Data
import Engine
import Foundation
import XCTest

/// The memory-mapped table cache: it holds exactly what in-memory encoding gives, it is reused while
/// the table and the options stay the same, and it is rebuilt when the table changes, the options
/// change, or its bytes are damaged.
final class TableCacheTests: XCTestCase {
    func writeTable(_ path: String, rows: Int, period: Int = 7) {
        var lines = ["a,b,kind,y"]
        for i in 0..<rows {
            lines.append("\(Double(i) * 0.5),\(i % period),\(["u", "v", "w"][i % 3]),\(i % 4 == 0 ? "yes" : "no")")
        }
        try! (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Every feature and class of `d`, through `gather`.
    func contents(_ d: Dataset) -> ([Float], [Int32]) {
        let n = d.sampleShape.count
        var input = [Float](repeating: 0, count: d.count * n)
        let targets = TargetBuffer(capacity: d.count, width: d.space.width)
        let indices = (0..<d.count).map(Int32.init)
        d.gather(indices, count: d.count, into: &input, targets: targets)
        return (input, Array(UnsafeBufferPointer(start: targets.classes, count: d.count)))
    }

    func load(_ path: String, cache: Bool, target: String? = nil) throws -> DataSplits {
        var s = DataSource()
        s.dataset = "csv:" + path
        s.tableCache = cache
        s.holdout = 10
        s.target = target
        return try DataSplits.load(s)
    }

    func testCacheEqualsInMemoryAndIsRebuiltWhenStale() throws {
        let dir = temporaryDirectory()
        let table = dir + "/t.csv", cache = TableCache.path(for: table)
        XCTAssertEqual(cache, table + ".ddpcache")
        writeTable(table, rows: 100)
        let memory = try load(table, cache: false)
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache))
        let mapped = try load(table, cache: true)
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache))
        XCTAssertEqual(mapped.preprocessing, memory.preprocessing)
        for (a, b) in [(memory.train, mapped.train), (memory.eval, mapped.eval)] {
            let (fa, ca) = contents(a), (fb, cb) = contents(b)
            XCTAssertEqual(fa, fb)
            XCTAssertEqual(ca, cb)
        }
        // Reused as it is: the file is not written again.
        let written = try FileManager.default.attributesOfItem(atPath: cache)[.modificationDate] as! Date
        Thread.sleep(forTimeInterval: 0.02)
        _ = try load(table, cache: true)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: cache)[.modificationDate] as! Date, written)

        // The table changes: the cache follows it.
        writeTable(table, rows: 100, period: 5)
        let changed = try load(table, cache: true)
        XCTAssertEqual(contents(changed.train).0, contents(try load(table, cache: false).train).0)
        XCTAssertNotEqual(contents(changed.train).0, contents(mapped.train).0)

        // Other options: rebuilt for them (target b: 5 integer values, so 5 classes).
        let other = try load(table, cache: true, target: "b")
        XCTAssertEqual(other.train.space.width, 5)

        // A damaged byte in the payload: the checksum fails and the cache is rebuilt, never used.
        let good = contents(try load(table, cache: true).train).0
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: cache)))
        bytes[40] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: cache))
        let repaired = try load(table, cache: true)
        XCTAssertEqual(contents(repaired.train).0, good)
        XCTAssertNotEqual(try [UInt8](Data(contentsOf: URL(fileURLWithPath: cache))), bytes)
    }
}
