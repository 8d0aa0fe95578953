import Foundation
import Engine

/// Labelled image files, listed as torchvision's `ImageFolder` does (`ROOT/CLASS/*.png|jpg`, classes
/// sorted by folder name) or by a labels CSV of `file,label` rows (paths relative to the CSV), and
/// decoded once into one byte cache: the images of a `Dataset`.
public enum ImageFolder {
    public struct Entry: Equatable {
        public var path: String
        public var label: String

        public init(path: String, label: String) {
            self.path = path
            self.label = label
        }
    }

    static let extensions: Set<String> = ["png", "jpg", "jpeg"]

    /// `root/CLASS/FILE` for every image file, classes and files in sorted order.
    public static func scan(_ root: String) throws -> [Entry] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw DataError("image folder '\(root)' does not exist")
        }
        let classes = try fm.contentsOfDirectory(atPath: root).filter { name in
            var d: ObjCBool = false
            return !name.hasPrefix(".") && fm.fileExists(atPath: root + "/" + name, isDirectory: &d) && d.boolValue
        }.sorted()
        guard !classes.isEmpty else {
            throw DataError("\(root): no class folders (expected \(root)/CLASS/*.png or *.jpg, as torchvision's ImageFolder)")
        }
        var entries: [Entry] = []
        for c in classes {
            let files = try fm.contentsOfDirectory(atPath: root + "/" + c)
                .filter { extensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
            entries += files.map { Entry(path: root + "/" + c + "/" + $0, label: c) }
        }
        guard !entries.isEmpty else { throw DataError("\(root): no .png or .jpg files in its class folders") }
        return entries
    }

    /// The rows of a labels CSV: `file,label` (a header row naming them is skipped), file paths
    /// relative to the CSV's folder.
    public static func readLabels(_ path: String) throws -> [Entry] {
        let base = (path as NSString).deletingLastPathComponent
        var entries: [Entry] = []
        try CSV.read(path: path) { record in
            let line = record.line
            guard record.count == 2 else {
                throw DataError("\(path): row \(line): expected 2 columns (file,label), found \(record.count)")
            }
            let file = record[0].string, label = record[1].string
            if entries.isEmpty && file.lowercased() == "file" && label.lowercased() == "label" { return }  // the header
            guard !file.isEmpty else { throw DataError("\(path): row \(line), column 1 ('file'): empty file name") }
            guard !label.isEmpty else { throw DataError("\(path): row \(line), column 2 ('label'): empty label") }
            entries.append(Entry(path: file.hasPrefix("/") || base.isEmpty ? file : base + "/" + file, label: label))
        }
        guard !entries.isEmpty else { throw DataError("\(path): no images listed") }
        return entries
    }

    /// Class names in label order: numerically when every label is an integer, else by text.
    public static func classNames(of labels: [String]) -> [String] {
        let distinct = Array(Set(labels))
        if distinct.allSatisfy({ Int($0) != nil }) { return distinct.sorted { Int($0)! < Int($1)! } }
        return distinct.sorted()
    }

    /// Decodes `entries` into one dataset. Every image gets `channels` (nil: the first image's) and
    /// the size `size` ([H, W]; nil: every image must have the first image's size).
    public static func load(_ entries: [Entry], classNames: [String], channels: Int?, size: [Int]?, name: String) throws -> Dataset {
        let index = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, Int32($0)) })
        var pixels: [UInt8] = []
        var labels: [Int32] = []
        labels.reserveCapacity(entries.count)
        var shape: (c: Int, h: Int, w: Int)?
        for e in entries {
            guard let label = index[e.label] else {
                throw DataError("\(e.path): label '\(e.label)' is not one of the training classes (\(classNames.prefix(20).joined(separator: ", ")))")
            }
            var image = try ImageFile.decode(path: e.path, channels: shape?.c ?? channels)
            if let size, image.height != size[0] || image.width != size[1] {
                image = image.resized(height: size[0], width: size[1])
            }
            if let s = shape {
                guard image.height == s.h && image.width == s.w else {
                    throw DataError("\(e.path): image is \(image.height)x\(image.width), the first image is \(s.h)x\(s.w); "
                                    + "use --image-size HxW to resize every image")
                }
            } else {
                shape = (image.channels, image.height, image.width)
                pixels.reserveCapacity(entries.count * image.pixels.count)
            }
            pixels += image.pixels
            labels.append(label)
        }
        let s = shape!
        return try Dataset(name: name, sampleShape: Shape(s.c, s.h, s.w), classNames: classNames, pixels: pixels, labels: labels)
    }
}
