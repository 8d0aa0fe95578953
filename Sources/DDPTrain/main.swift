import ArgumentParser
import Foundation

// Before anything else: OpenBLAS's core type must be in the environment when the library loads.
BLASEnvironment.prepareCoreType()

// `--resume` alone means the newest checkpoint: give it the value "latest".
nonisolated(unsafe) var arguments = Array(CommandLine.arguments.dropFirst())
if let i = arguments.firstIndex(of: "--resume"), i + 1 == arguments.count || arguments[i + 1].hasPrefix("-") {
    arguments.insert("latest", at: i + 1)
}

/// Help, `CleanExit` and `ExitCode` end as ArgumentParser ends them; anything else is one line on
/// stderr (exit 2 for usage errors, 1 otherwise).
func finish(_ error: Error, usage: Bool) -> Never {
    if error is ExitCode || DDPTrainCommand.exitCode(for: error) == .success {
        DDPTrainCommand.exit(withError: error)
    }
    ErrorReport.fail(error, usage: usage || error is ValidationError)
}

var command: ParsableCommand
do {
    // `--config FILE`: the file's flags first, so that the command line overrides them.
    arguments = try RunConfig.expand(arguments)
    command = try DDPTrainCommand.parseAsRoot(arguments)
} catch {
    finish(error, usage: true)
}
do {
    // For --help, parsing returns ArgumentParser's help command, whose run() throws the help request.
    try command.run()
} catch {
    finish(error, usage: false)
}
