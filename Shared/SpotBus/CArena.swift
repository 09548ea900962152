import CRabbitMQ
import Foundation

/// C memory for one rabbitmq-c call: `amqp_bytes_t` only borrows, so every string and body
/// is copied here and freed when the arena goes away, after the call returned.
final class CArena {
    enum FieldValue {
        case string(String)
        case int(Int64)
    }

    private var allocations: [UnsafeMutableRawPointer] = []

    deinit {
        for p in allocations { free(p) }
    }

    func bytes(_ s: String) -> amqp_bytes_t {
        data(Array(s.utf8))
    }

    func data(_ bytes: [UInt8]) -> amqp_bytes_t {
        let p = malloc(max(bytes.count, 1))!
        allocations.append(p)
        bytes.withUnsafeBytes { src in
            if let base = src.baseAddress { p.copyMemory(from: base, byteCount: bytes.count) }
        }
        return amqp_bytes_t(len: bytes.count, bytes: p)
    }

    func table(_ entries: [(String, FieldValue)]) -> amqp_table_t {
        let raw = malloc(MemoryLayout<amqp_table_entry_t>.stride * max(entries.count, 1))!
        allocations.append(raw)
        let p = raw.bindMemory(to: amqp_table_entry_t.self, capacity: max(entries.count, 1))
        for (i, (key, value)) in entries.enumerated() {
            var v = amqp_field_value_t()
            switch value {
            case .string(let s):
                v.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
                v.value.bytes = bytes(s)
            case .int(let n):
                v.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
                v.value.i64 = n
            }
            p[i] = amqp_table_entry_t(key: bytes(key), value: v)
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: p)
    }
}
