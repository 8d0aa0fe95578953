import Foundation

/// The bytes of a checkpoint file, parsed and range-checked without knowing the model:
///
///     offset 0   "DDPCKPT\n"   magic
///            8   UInt32 LE     format version (1)
///           12   UInt32 LE     CRC-32 of every byte from offset 24 to the end
///           16   UInt64 LE     number of bytes from offset 24 to the end
///           24   a safetensors image: the weights under their PyTorch names (as `--save` writes
///                them), the optimizer's flat state buffers as "optimizer.<name>", and the training
///                state as JSON in its metadata under "ddp_train.state"
///
/// Python reads the weights with `safetensors.numpy.load(open(path, "rb").read()[24:])`.
/// Everything here is a pure function of the bytes (the fuzz target `Fuzz/checkpoint` drives it).
public enum CheckpointFile {
    public static let magic: [UInt8] = Array("DDPCKPT\n".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 24
    public static let stateKey = "ddp_train.state"

    /// Early stopping's state: the score to beat (accuracy, or minus the loss) and the evaluations
    /// since it was set.
    public struct EarlyStopState: Codable, Equatable, Sendable {
        public var reference: Double?
        public var stale = 0
        public init(reference: Double? = nil, stale: Int = 0) {
            self.reference = reference
            self.stale = stale
        }
    }

    /// Where training stands, as the checkpoint records it (the run configuration is in the same JSON
    /// under "config"; the training module reads it). ddp-train keeps no stateful per-rank RNG: the
    /// epoch order is a function of (seed, epoch) and dropout masks of (seed, step, layer, sample),
    /// so `seed`, `epoch` and `step` are every rank's random state.
    public struct Position: Codable, Equatable, Sendable {
        public var step: Int
        public var epoch: Int
        public var batchInEpoch: Int
        public var seed: UInt64
        public var globalBatch: Int
        public var trainCount: Int
        public var bestAccuracy: Double
        /// The best validation loss when "best" is by loss (`--monitor val_loss`, regression).
        public var bestLoss: Double?
        /// `--early-stop`'s count, so that a resumed run stops where the whole run would.
        public var earlyStop: EarlyStopState?
        public var optimizer: String
        public var optimizerStep: Int
        public var learningRate: Float
        public var model: String
        public var worldSize: Int
        /// The run the checkpoint belongs to (its files are `ckpt-STEP-RUN.ckpt`); absent in files
        /// written before runs had identities.
        public var runID: String?

        public init(step: Int, epoch: Int, batchInEpoch: Int, seed: UInt64, globalBatch: Int, trainCount: Int,
                    bestAccuracy: Double, optimizer: String, optimizerStep: Int, learningRate: Float, model: String,
                    worldSize: Int, runID: String?) {
            self.step = step
            self.epoch = epoch
            self.batchInEpoch = batchInEpoch
            self.seed = seed
            self.globalBatch = globalBatch
            self.trainCount = trainCount
            self.bestAccuracy = bestAccuracy
            self.optimizer = optimizer
            self.optimizerStep = optimizerStep
            self.learningRate = learningRate
            self.model = model
            self.worldSize = worldSize
            self.runID = runID
        }

        /// Every field in the range a real run can produce; a crafted file with a valid CRC gets no
        /// further than this.
        public func check(name: String) throws {
            func bad(_ why: String) -> DataError { DataError("\(name): corrupt training state: \(why)") }
            guard step >= 0 else { throw bad("step \(step) is negative") }
            guard epoch >= 0 else { throw bad("epoch \(epoch) is negative") }
            guard batchInEpoch >= 0 else { throw bad("position in the epoch \(batchInEpoch) is negative") }
            guard globalBatch > 0 else { throw bad("global batch \(globalBatch) is not positive") }
            guard trainCount > 0 else { throw bad("training-set size \(trainCount) is not positive") }
            let batches = (trainCount - 1) / globalBatch + 1  // at most, without --drop-last
            guard batchInEpoch <= batches else {
                throw bad("position in the epoch \(batchInEpoch) is past the epoch's \(batches) batches")
            }
            guard bestAccuracy == -1 || (bestAccuracy >= 0 && bestAccuracy <= 1) else {
                throw bad("best accuracy \(bestAccuracy) is not in [0, 1]")
            }
            if let l = bestLoss, !(l.isFinite && l >= 0) { throw bad("best loss \(l) is not a finite number >= 0") }
            if let e = earlyStop, e.stale < 0 || !(e.reference?.isFinite ?? true) { throw bad("early-stopping state \(e) is out of range") }
            guard optimizerStep >= 0 && optimizerStep <= step else {
                throw bad("optimizer step \(optimizerStep) is not in 0...\(step)")
            }
            guard learningRate.isFinite && learningRate >= 0 else { throw bad("learning rate \(learningRate) is not a finite number >= 0") }
            guard worldSize > 0 else { throw bad("world size \(worldSize) is not positive") }
            if let runID { guard CheckpointFile.isRunID(runID) else { throw bad("run id '\(runID)' is not 8 hex digits") } }
        }
    }

    /// A verified, parsed checkpoint: its position, the state JSON (for the run configuration) and
    /// its tensors (weights, and the optimizer's buffers under "optimizer.").
    public struct Contents {
        public var position: Position
        public var stateJSON: String
        public var tensors: [String: SafeTensors.Tensor]
    }

    /// Magic, version, length, CRC, safetensors structure, the position's ranges and finite values.
    public static func decode(_ bytes: [UInt8], name: String) throws -> Contents {
        try check(bytes, name: name)
        let file = try SafeTensors.decode(bytes, from: headerSize, name: name)
        guard let json = file.metadata[stateKey],
              let position = try? JSONDecoder().decode(Position.self, from: Data(json.utf8)) else {
            throw DataError("\(name): checkpoint has no readable training state")
        }
        try position.check(name: name)
        for key in file.order {
            if let bad = file.tensors[key]!.values.first(where: { !$0.isFinite }) {
                throw DataError("\(name): tensor '\(key)' holds a non-finite value (\(bad)); the checkpoint is unusable")
            }
        }
        return Contents(position: position, stateJSON: json, tensors: file.tensors)
    }

    /// Checks magic, version, length and checksum.
    public static func check(_ bytes: [UInt8], name: String) throws {
        guard bytes.count >= headerSize else {
            throw DataError("\(name): truncated checkpoint (\(bytes.count) bytes, the header alone is \(headerSize))")
        }
        guard Array(bytes[0..<8]) == magic else { throw DataError("\(name): not a ddp-train checkpoint (wrong magic number)") }
        let v = readLE32(bytes, 8)
        guard v == version else { throw DataError("\(name): checkpoint format version \(v), this ddp-train reads version \(version)") }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[16 + i]) << (8 * UInt64(i)) }
        guard length == UInt64(bytes.count - headerSize) else {
            throw DataError("\(name): truncated checkpoint (\(bytes.count - headerSize) of \(length) bytes)")
        }
        let crc = bytes.withUnsafeBytes { crc32Checksum(UnsafeRawBufferPointer(rebasing: $0[headerSize...])) }
        guard crc == readLE32(bytes, 12) else { throw DataError("\(name): corrupted checkpoint (checksum mismatch)") }
    }

    /// The 24 bytes that precede a safetensors body in the file.
    public static func header(for body: [UInt8]) -> [UInt8] {
        var out = magic
        func le32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        le32(version)
        le32(body.withUnsafeBytes { crc32Checksum($0) })
        withUnsafeBytes(of: UInt64(body.count).littleEndian) { out += $0 }
        return out
    }

    /// The file's bytes around a safetensors body.
    public static func frame(_ body: [UInt8]) -> [UInt8] { header(for: body) + body }

    /// Writes a checkpoint file atomically: header, then body, with no copy of the body.
    public static func write(body: [UInt8], to path: String) throws {
        let head = header(for: body)
        try AtomicFile.write(to: path) { fd in
            try head.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: path) }
            try body.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: path) }
        }
    }

    /// Reads a checkpoint file and checks its header and CRC; returns the file's bytes.
    public static func read(path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError("\(path): cannot read checkpoint") }
        let bytes = [UInt8](data)
        try check(bytes, name: path)
        return bytes
    }

    // MARK: - Names: ckpt-STEP-RUN.ckpt

    /// A new run's identity: 8 random hex digits.
    public static func newRunID() -> String {
        String(format: "%08x", UInt32.random(in: 0...UInt32.max))
    }

    public static func isRunID(_ s: String) -> Bool {
        s.utf8.count == 8 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    public static func fileName(step: Int, runID: String) -> String { String(format: "ckpt-%08d-%@.ckpt", step, runID) }

    /// (step, run) of a checkpoint file name: `ckpt-STEP-RUN.ckpt`, or `ckpt-STEP.ckpt` (no run) as
    /// older versions wrote. Nil for any other name.
    public static func parseName(_ name: String) -> (step: Int, runID: String?)? {
        guard name.hasPrefix("ckpt-") && name.hasSuffix(".ckpt") else { return nil }
        let core = name.dropFirst(5).dropLast(5).split(separator: "-", omittingEmptySubsequences: false)
        guard let first = core.first, first.count >= 8, let step = Int(first), step >= 0 else { return nil }
        switch core.count {
        case 1: return (step, nil)
        case 2 where isRunID(String(core[1])): return (step, String(core[1]))
        default: return nil
        }
    }

    private static func readLE32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }
}
