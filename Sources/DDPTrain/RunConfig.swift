import ArgumentParser
import Data
import Foundation
import Yams

/// `--config run.yaml`: a YAML mapping of training flags, written without their dashes, to values:
///
///     model: cnn
///     optimizer: adam
///     lr: 0.001
///     epochs: 3
///     nesterov: false          # a flag: true gives it, false leaves it out
///     header: false            # an inverted flag: --no-header
///     val-split: null          # unset
///
/// The file's flags go before the command line's, and ArgumentParser keeps the last value of an
/// option, so the command line overrides the file. `--print-config` prints the resolved
/// configuration, every training flag with its value (the command line's, the file's, or the
/// default), in the same form; a training run writes it beside its checkpoints and its weights, and
/// `--config` of that file repeats the run.
enum RunConfig {
    /// Flags that say how to read the configuration or run the command, not what the run is.
    static let notRecorded: Set<String> = ["config", "print-config", "resume", "help", "version", "experimental-dump-help"]

    /// The training command's arguments with each `--config FILE` preceded by the flags in FILE;
    /// other commands' arguments as they are.
    static func expand(_ arguments: [String]) throws -> [String] {
        guard let i = arguments.firstIndex(where: { $0 == "--config" || $0.hasPrefix("--config=") }) else { return arguments }
        let subcommands = ["evaluate", "predict", "report", "export", "download", "bench", "help"]
        if let first = arguments.first, subcommands.contains(first) { return arguments }
        let path: String
        if arguments[i].hasPrefix("--config=") {
            path = String(arguments[i].dropFirst(9))
        } else {
            guard i + 1 < arguments.count else { throw ValidationError("--config needs a file, e.g. --config run.yaml") }
            path = arguments[i + 1]
        }
        let flags = try flags(fromYAML: path)
        let start = arguments.first == "train" ? 1 : 0
        return Array(arguments[..<start]) + flags + Array(arguments[start...])
    }

    /// The flags a YAML file sets, as command-line arguments.
    static func flags(fromYAML path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("--config \(path): cannot read the file") }
        let loaded: Any?
        do {
            loaded = try Yams.load(yaml: text)
        } catch {
            throw ValidationError("--config \(path): not valid YAML (\(String(describing: error).split(separator: "\n").first ?? ""))")
        }
        guard let mapping = loaded as? [String: Any] else {
            if loaded == nil { return [] }
            throw ValidationError("--config \(path): expected a mapping of flags to values, such as 'lr: 0.01'")
        }
        var result: [String] = []
        for key in mapping.keys.sorted() {
            let name = key.hasPrefix("--") ? String(key.dropFirst(2)) : key
            guard !notRecorded.contains(name) else { continue }
            switch mapping[key] {
            case nil, is NSNull: continue
            case let b as Bool:
                if b { result.append("--" + name) } else if invertible.contains(name) { result.append("--no-" + name) }
            case let list as [Any]:
                result += ["--" + name, list.map { "\($0)" }.joined(separator: ",")]
            case let value?:
                guard !(value is [String: Any]) else { throw ValidationError("--config \(path): '\(key)' holds a mapping; flags take one value") }
                result += ["--" + name, "\(value)"]
            }
        }
        return result
    }

    /// The training command's arguments as ArgumentParser describes them (names, kind, default).
    struct Argument: Decodable {
        struct Name: Decodable { var kind: String; var name: String }
        var kind: String
        var names: [Name]?
        var defaultValue: String?
    }

    static let trainArguments: [Argument] = {
        struct Dump: Decodable {
            struct Command: Decodable { var arguments: [Argument]? }
            var command: Command
        }
        return (try? JSONDecoder().decode(Dump.self, from: Data(Train._dumpHelp().utf8)))?.command.arguments ?? []
    }()

    /// Flags with a `--no-` form (ArgumentParser's `.prefixedNo` inversions), read from that description.
    static let invertible: Set<String> = {
        let names = Set(trainArguments.filter { $0.kind == "flag" }.flatMap { ($0.names ?? []).map(\.name) })
        return names.filter { names.contains("no-" + $0) }
    }()

    /// Every training flag and its value for these (expanded) arguments: the last value given, else
    /// the default ArgumentParser knows; nil where there is none.
    static func resolved(_ arguments: [String]) -> [(name: String, value: Any?)] {
        var given: [String: Any] = [:]
        var i = arguments.first == "train" ? 1 : 0
        let kinds = Dictionary(trainArguments.flatMap { a in (a.names ?? []).map { ($0.name, a.kind) } },
                               uniquingKeysWith: { a, _ in a })
        while i < arguments.count {
            let token = arguments[i]
            i += 1
            guard token.hasPrefix("--") else { continue }
            var name = String(token.dropFirst(2))
            if let eq = name.firstIndex(of: "=") {
                given[String(name[..<eq])] = String(name[name.index(after: eq)...])
                continue
            }
            if kinds[name] == "flag" {
                if name.hasPrefix("no-"), invertible.contains(String(name.dropFirst(3))) {
                    name = String(name.dropFirst(3))
                    given[name] = false
                } else {
                    given[name] = true
                }
            } else if i < arguments.count {
                given[name] = arguments[i]
                i += 1
            }
        }
        var result: [(name: String, value: Any?)] = []
        var seen = Set<String>()
        for argument in trainArguments {
            guard let long = argument.names?.first(where: { $0.kind == "long" })?.name else { continue }
            var name = long
            if argument.kind == "flag", name.hasPrefix("no-"), invertible.contains(String(name.dropFirst(3))) { name = String(name.dropFirst(3)) }
            guard !notRecorded.contains(name), seen.insert(name).inserted else { continue }
            let fallback: Any? = argument.kind == "flag" && !invertible.contains(name) ? false : argument.defaultValue
            result.append((name, given[name] ?? fallback))
        }
        return result
    }

    /// The resolved configuration as YAML, one `flag: value` line per training flag.
    /// `filled` gives values decided outside ArgumentParser (the dataset and its folder), used where
    /// the arguments leave a flag unset.
    static func yaml(_ arguments: [String], filled: [String: String] = [:]) throws -> String {
        var pairs: [(Node, Node)] = []
        for (name, given) in resolved(arguments) {
            let value: Any? = given ?? filled[name]
            let node: Node
            switch value {
            case nil: node = Node("null", Tag(.null))
            case let b as Bool: node = Node(b ? "true" : "false", Tag(.bool))
            case let s as String:
                // Numbers stay numbers; any other text is a string (quoted where YAML would read it otherwise).
                node = Double(s) != nil ? Node(s, Tag(.float)) : Node(s, Tag(.str))
            case let v?: node = Node("\(v)")
            }
            pairs.append((Node(name), node))
        }
        return try Yams.serialize(node: Node(pairs))
    }

    /// Writes the resolved configuration to `path` (rank 0, at the start of a run).
    static func write(_ arguments: [String], filled: [String: String], to path: String) throws {
        try AtomicFile.write(Array(try yaml(arguments, filled: filled).utf8), to: path)
    }

    /// Where a run's configuration goes beside its weights: `model.safetensors` -> `model.yaml`.
    static func path(besideWeights weights: String) -> String {
        (weights as NSString).deletingPathExtension + ".yaml"
    }
}
