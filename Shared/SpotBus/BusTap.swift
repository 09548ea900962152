import Foundation
import SpotModels
import Synchronization

/// Records every message this process published on `spotguard.events` and every message it
/// consumed and handled, one JSON line each (`direction`, `routing_key`, `body`), when
/// `SPOTGUARD_BUS_TAP_DIR` names a directory. The test suite sets it for every process it
/// starts and checks each line against docs/asyncapi.yaml (deploy/check-bus-contract.py), so
/// a payload type that changes without its document fails the suite. Off (nil) otherwise.
final class BusTap: Sendable {
    enum Direction: String { case published, consumed }

    static let shared: BusTap? = ProcessInfo.processInfo.environment["SPOTGUARD_BUS_TAP_DIR"].flatMap { BusTap(directory: $0) }

    private let file: Mutex<FileHandle>

    private init?(directory: String) {
        guard !directory.isEmpty else { return nil }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = "\(directory)/\(ProcessInfo.processInfo.processName)-\(getpid()).jsonl"
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else { return nil }
        file = Mutex(handle)
    }

    func record(_ direction: Direction, _ delivery: Delivery) {
        record(direction, exchange: delivery.exchange, routingKey: delivery.routingKey, body: delivery.body)
    }

    func record(_ direction: Direction, exchange: String, routingKey: String, body: [UInt8]) {
        guard exchange == Topology.eventsExchange else { return }
        var line = Array("{\"direction\":\"\(direction.rawValue)\",\"routing_key\":".utf8)
        line += (try? JSONEncoder().encode(routingKey)).map(Array.init) ?? Array("\"\"".utf8)
        // the body as it travelled; a body that is not JSON makes the line unreadable, which the check reports
        line += Array(",\"body\":".utf8) + body + Array("}\n".utf8)
        file.withLock { $0.write(Data(line)) }
    }
}
