import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `ddp-train download`: fetches the four files of MNIST or Fashion-MNIST from the public mirrors
/// torchvision uses, checks each against its published MD5, and stores it atomically.
public enum Downloader {
    public struct Resource: Sendable {
        public let file: String
        public let md5: String
    }

    public static func mirrors(for kind: DatasetKind) -> [String] {
        switch kind {
        case .mnist: return ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
        case .fashionMNIST: return ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
        case .synthetic, .csv, .images: return []
        }
    }

    public static func resources(for kind: DatasetKind) -> [Resource] {
        switch kind {
        case .mnist:
            return [Resource(file: "train-images-idx3-ubyte.gz", md5: "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                    Resource(file: "train-labels-idx1-ubyte.gz", md5: "d53e105ee54ea40749a09fcbcd1e9432"),
                    Resource(file: "t10k-images-idx3-ubyte.gz", md5: "9fb629c4189551a2d022fa330f9573f3"),
                    Resource(file: "t10k-labels-idx1-ubyte.gz", md5: "ec29112dd5afa0611ce80d1b7f02629c")]
        case .fashionMNIST:
            return [Resource(file: "train-images-idx3-ubyte.gz", md5: "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                    Resource(file: "train-labels-idx1-ubyte.gz", md5: "25c81989df183df01b3e8a0aad5dffbe"),
                    Resource(file: "t10k-images-idx3-ubyte.gz", md5: "bef4ecab320f06d8554ea6380940ec79"),
                    Resource(file: "t10k-labels-idx1-ubyte.gz", md5: "bb300cfdad3c16e7a12a480ee83cd310")]
        case .synthetic, .csv, .images: return []
        }
    }

    public static func md5Hex(_ bytes: [UInt8]) -> String {
        Insecure.MD5.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    /// Downloads every file not already present and valid. `log` receives one line per file.
    /// Throws on the first file that no mirror could supply with the right checksum.
    public static func download(kind: DatasetKind, into dir: String, mirror: String?, timeout: TimeInterval = 30,
                                log: (String) -> Void) throws {
        if case .synthetic = kind { throw DataError("synthetic datasets are generated, not downloaded") }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw DataError("cannot create \(dir): \(error.localizedDescription)")
        }
        let bases = mirror.map { [$0.hasSuffix("/") ? $0 : $0 + "/"] } ?? mirrors(for: kind)
        var missing: [String] = []
        for resource in resources(for: kind) {
            let target = (dir as NSString).appendingPathComponent(resource.file)
            if let existing = FileManager.default.contents(atPath: target), md5Hex([UInt8](existing)) == resource.md5 {
                log("\(resource.file): present, checksum ok")
                continue
            }
            var failures: [String] = []
            var stored = false
            for base in bases {
                let url = base + resource.file
                do {
                    let bytes = try fetch(url, timeout: timeout)
                    let digest = md5Hex(bytes)
                    guard digest == resource.md5 else {
                        failures.append("\(url): checksum mismatch (md5 \(digest), expected \(resource.md5))")
                        continue
                    }
                    try AtomicFile.write(bytes, to: target)
                    log("\(resource.file): downloaded from \(base), \(bytes.count) bytes, md5 ok")
                    stored = true
                    break
                } catch {
                    failures.append("\(url): \(error)")
                }
            }
            if !stored { missing.append("\(resource.file): \(failures.first ?? "no mirror")") }
        }
        if !missing.isEmpty {
            let total = resources(for: kind).count
            let mismatch = missing.allSatisfy { $0.contains("checksum mismatch") }
            let advice = mismatch
                ? "The mirror served files other than the published ones; try another --mirror"
                : "Offline? Copy the four files into a folder and give it as --data-dir"
                    + (kind == .fashionMNIST ? ", or apt-get install dataset-fashion-mnist" : " (or DDP_DATA_DIR)")
            throw DataError("could not download \(missing.count) of \(total) files (\(missing[0])\(missing.count > 1 ? "; ..." : "")). \(advice)")
        }
    }

    /// One HTTP GET, synchronously.
    static func fetch(_ urlString: String, timeout: TimeInterval) throws -> [UInt8] {
        guard let url = URL(string: urlString) else { throw DataError("bad URL \(urlString)") }
        var request = URLRequest(url: url)
        request.timeoutInterval = timeout
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.timeoutIntervalForResource = timeout * 10
        let session = URLSession(configuration: config)
        defer { session.finishTasksAndInvalidate() }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<[UInt8], Error> = .failure(DataError("no response"))
        let task = session.dataTask(with: request) { data, response, error in
            if let error {
                result = .failure(DataError(error.localizedDescription))
            } else if let http = response as? HTTPURLResponse, http.statusCode != 200 {
                result = .failure(DataError("HTTP \(http.statusCode)"))
            } else {
                result = .success([UInt8](data ?? Data()))
            }
            done.signal()
        }
        task.resume()
        done.wait()
        return try result.get()
    }
}
