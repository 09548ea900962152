import Foundation

/// The workload's state as it travels to a replica: the state file compressed with the
/// system's gzip (every EC2 image has it), written back whole on the replica (to a temporary
/// file first, so a reader never sees half a state).
enum StateArchive {
    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    static func gzip(_ arguments: [String], input: Data) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["gzip"] + arguments
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        let writer = Thread {
            stdin.fileHandleForWriting.write(input)
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failed(description: "gzip \(arguments.joined(separator: " ")) exited \(process.terminationStatus)") }
        return output
    }

    static func pack(_ path: String) throws -> Data {
        try gzip(["-c"], input: try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func unpack(_ archive: Data, to path: String) throws {
        let content = try gzip(["-d", "-c"], input: archive)
        try content.write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
