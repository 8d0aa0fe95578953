import ArgumentParser
import Foundation

// Before anything else: OpenBLAS's core type must be in the environment when the library loads.
BLASEnvironment.prepareCoreType()

do {
    var command = try DDPTrainCommand.parseAsRoot()
    do {
        try command.run()
    } catch let error as CleanExit {
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
