import ArgumentParser
import Foundation

// Before anything else: OpenBLAS's core type must be in the environment when the library loads.
BLASEnvironment.prepareCoreType()

// `--resume` alone means the newest checkpoint: give it the value "latest".
var arguments = Array(CommandLine.arguments.dropFirst())
if let i = arguments.firstIndex(of: "--resume"), i + 1 == arguments.count || arguments[i + 1].hasPrefix("-") {
    arguments.insert("latest", at: i + 1)
}

do {
    var command = try DDPTrainCommand.parseAsRoot(arguments)
    do {
        try command.run()
    } catch let error as CleanExit {
        DDPTrainCommand.exit(withError: error)
    } catch let error as ExitCode {
        DDPTrainCommand.exit(withError: error)
    } catch let error as ValidationError {
        ErrorReport.fail(error, usage: true)
    } catch {
        ErrorReport.fail(error, usage: false)
    }
} catch {
    if DDPTrainCommand.exitCode(for: error) == .success { DDPTrainCommand.exit(withError: error) }
    ErrorReport.fail(error, usage: true)
}
