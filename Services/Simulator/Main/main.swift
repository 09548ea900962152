import Foundation
import Logging
import SimulatorApp

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `spotguard-sim run …` (the simulated region and fleet) and `spotguard-sim drill …` (a
/// failover drill against a running simulator, printed as a timeline).
let arguments = Array(CommandLine.arguments.dropFirst())
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["SPOTGUARD_LOG_LEVEL"] ?? "notice") ?? .notice
    return handler
}
let logger = Logger(label: "spotguard-sim")

func fail(_ message: String, _ code: Int32 = 2) -> Never {
    FileHandle.standardError.write(Data("spotguard-sim: \(message)\n".utf8))
    exit(code)
}

switch arguments.first {
case "run":
    do {
        let configuration = try SimConfiguration(arguments: Array(arguments.dropFirst()))
        try await Simulator.run(configuration, logger: logger)
    } catch let e as SimConfiguration.Invalid {
        fail("\(e)\n\(SimConfiguration.usage)")
    } catch {
        fail("\(error)", 1)
    }
case "drill":
    do {
        try await DrillCommand.run(Array(arguments.dropFirst()))
    } catch let e as SimConfiguration.Invalid {
        fail("\(e)\n\(SimConfiguration.usage)")
    } catch {
        fail("\(error)", 1)
    }
default:
    fail(SimConfiguration.usage)
}
