import CLibPQ
import Foundation

/// One libpq connection. It lives on one worker thread of `PostgresStore` and is handed to the
/// closures that run there, never shared between threads (libpq: "no two threads attempt to
/// manipulate the same PGconn object at the same time").
///
/// Only parameterized statements: values travel as `$1…$n` parameters, never inside SQL text.
///
/// The connection is non-blocking underneath: every answer is awaited with `poll` for at most
/// `answerTimeoutMs`. TCP alone never gives up on a peer that accepts bytes and answers nothing
/// (a stalled proxy or load balancer in between: its kernel acknowledges everything, so neither
/// keepalives nor `tcp_user_timeout` fire) and the server's `statement_timeout` cannot fire for a
/// statement it never received; past the deadline the connection is closed and the statement
/// fails as a lost connection.
public final class PGConnection {
    private var conn: OpaquePointer?
    private let settings: [(String, String)]
    private let answerTimeoutMs: Int
    private let largeMessageBytes: Int
    /// When the connection last sent or read a message of at least `largeMessageBytes`
    /// (nil: none since it opened). libpq grows its buffers to the largest message and keeps
    /// them until the connection closes.
    private(set) var largeMessageAt: ContinuousClock.Instant?

    /// - Parameter answerTimeoutMs: how long to wait for any answer of the server (0: forever).
    init(settings: [(String, String)], answerTimeoutMs: Int, largeMessageBytes: Int = 1 << 20) {
        self.settings = settings
        self.answerTimeoutMs = answerTimeoutMs
        self.largeMessageBytes = largeMessageBytes
    }

    private func moved(_ bytes: Int) {
        if bytes >= largeMessageBytes { largeMessageAt = .now }
    }

    deinit { close() }

    var isOpen: Bool { conn.map { PQstatus($0) == CONNECTION_OK } ?? false }

    func open() throws {
        close()
        let keys = settings.map { strdup($0.0) }
        let values = settings.map { strdup($0.1) }
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
        }
        var k: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) } + [nil]
        var v: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        let c = PQconnectdbParams(&k, &v, 0)
        guard let c, PQstatus(c) == CONNECTION_OK else {
            let message = c.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let c { PQfinish(c) }
            throw PGError(.connection, message: message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        guard PQsetnonblocking(c, 1) == 0 else {
            PQfinish(c)
            throw PGError(.connection, message: "could not make the connection non-blocking")
        }
        conn = c
        largeMessageAt = nil
    }

    func close() {
        if let conn { PQfinish(conn) }
        conn = nil
        largeMessageAt = nil
    }

    /// Runs a statement and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ params: [(any PGEncodable)?] = []) throws -> [PGRow] {
        let result = try exec(sql, params)
        moved(result.bytes)
        return result.rows()
    }

    /// Runs a statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ params: [(any PGEncodable)?] = []) throws -> Int {
        try exec(sql, params).affectedRows
    }

    /// Runs SQL text that may hold several statements and no parameters (migrations).
    public func executeScript(_ sql: String) throws {
        let c = try handle()
        guard PQsendQuery(c, sql) == 1 else { throw lost(c) }
        let result = try awaitResult(c)
        try verify(result, c)
    }

    /// Bulk-loads rows with `COPY … FROM STDIN` in text format. Table and column names must be
    /// plain identifiers; values are escaped. Returns the number of rows written.
    @discardableResult
    public func copy(into table: String, columns: [String], rows: [[(any PGEncodable)?]]) throws -> Int {
        let identifier = /[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?/
        guard table.wholeMatch(of: identifier) != nil, columns.allSatisfy({ $0.wholeMatch(of: identifier) != nil }) else {
            throw PGError(.query, message: "copy: table and column names must be plain identifiers")
        }
        let c = try handle()
        guard PQsendQuery(c, "COPY \(table) (\(columns.joined(separator: ", "))) FROM STDIN") == 1 else { throw lost(c) }
        let start = try awaitResult(c)
        guard start.status == PGRES_COPY_IN else {
            try verify(start, c)
            throw PGError(.query, message: "copy: server did not enter COPY IN")
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 16)
        let deadline = self.deadline()
        func flush() throws {
            guard !buffer.isEmpty else { return }
            while true {  // 0: libpq's send buffer is full; drain it and offer the data again
                let rc = buffer.withUnsafeBufferPointer { p in
                    p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { PQputCopyData(c, $0, Int32(p.count)) }
                }
                if rc == 1 { break }
                guard rc == 0 else { throw lost(c) }
                try send(c, until: deadline)
            }
            buffer.removeAll(keepingCapacity: true)
        }
        for row in rows {
            guard row.count == columns.count else {
                _ = PQputCopyEnd(c, "row has the wrong number of values")
                _ = try? awaitResult(c)
                throw PGError(.query, message: "copy: a row has \(row.count) values for \(columns.count) columns")
            }
            for (i, value) in row.enumerated() {
                if i > 0 { buffer.append(0x09) }
                if let value { Self.appendCopyEscaped(value.pgText, to: &buffer) } else { buffer.append(contentsOf: [0x5C, 0x4E]) }
            }
            buffer.append(0x0A)
            if buffer.count >= 1 << 16 { try flush() }
        }
        try flush()
        while true {
            let rc = PQputCopyEnd(c, nil)
            if rc == 1 { break }
            guard rc == 0 else { throw lost(c) }
            try send(c, until: deadline)
        }
        let end = try awaitResult(c)
        try verify(end, c)
        return end.affectedRows
    }

    static func appendCopyEscaped(_ s: String, to buffer: inout [UInt8]) {
        for b in s.utf8 {
            switch b {
            case 0x5C: buffer.append(contentsOf: [0x5C, 0x5C])
            case 0x09: buffer.append(contentsOf: [0x5C, 0x74])
            case 0x0A: buffer.append(contentsOf: [0x5C, 0x6E])
            case 0x0D: buffer.append(contentsOf: [0x5C, 0x72])
            default: buffer.append(b)
            }
        }
    }

    private func handle() throws -> OpaquePointer {
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            throw PGError(.connection, message: "connection is not open")
        }
        return conn
    }

    /// Throws the result's error, if any. A read-only refusal (25006: this server is, or just
    /// became, a standby after a failover) also ends the connection, so the next unit of work
    /// connects again and, with `target_session_attrs=read-write`, reaches the new primary.
    private func verify(_ result: ResultBox, _ c: OpaquePointer) throws {
        do {
            try result.check(c)
        } catch let error as PGError where error.sqlState == "25006" {
            close()
            throw error
        }
    }

    private func exec(_ sql: String, _ params: [(any PGEncodable)?]) throws -> ResultBox {
        let c = try handle()
        // each value once in C memory: text NUL-terminated, binary (bytea) as it is with its length
        var lengths = [Int32](repeating: 0, count: params.count)
        var formats = [Int32](repeating: 0, count: params.count)
        var sending = sql.utf8.count
        let buffers: [UnsafeMutablePointer<CChar>?] = params.enumerated().map { i, param in
            guard let param else { return nil }
            guard let binary = param.pgBinary else {
                let text = param.pgText
                sending += text.utf8.count
                return strdup(text)
            }
            sending += binary.count
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, binary.count))
            binary.withUnsafeBytes { raw in UnsafeMutableRawPointer(p).copyMemory(from: raw.baseAddress ?? UnsafeRawPointer(p), byteCount: binary.count) }
            (lengths[i], formats[i]) = (Int32(binary.count), 1)
            return p
        }
        defer {
            for (i, b) in buffers.enumerated() {
                if formats[i] == 1 { b?.deallocate() } else { free(b) }
            }
        }
        let values: [UnsafePointer<CChar>?] = buffers.map { $0.map { UnsafePointer($0) } }
        let sent = values.withUnsafeBufferPointer { v in
            lengths.withUnsafeBufferPointer { l in
                formats.withUnsafeBufferPointer { f in
                    PQsendQueryParams(c, sql, Int32(params.count), nil, v.baseAddress, l.baseAddress, f.baseAddress, 0)
                }
            }
        }
        guard sent == 1 else { throw lost(c) }
        moved(sending)
        let result = try awaitResult(c)
        try verify(result, c)
        return result
    }

    // MARK: - Waiting for the server, bounded

    private func deadline() -> ContinuousClock.Instant? {
        answerTimeoutMs > 0 ? ContinuousClock.now + .milliseconds(answerTimeoutMs) : nil
    }

    /// The answer to what a `PQsend…` call queued, as `PQexec` would give it: the first error,
    /// else the last result (a `COPY IN` start ends the wait, its data comes next).
    private func awaitResult(_ c: OpaquePointer) throws -> ResultBox {
        let deadline = deadline()
        try send(c, until: deadline)
        var answer: ResultBox?
        while true {
            while PQisBusy(c) == 1 {
                try wait(c, for: Int16(POLLIN), until: deadline)
                guard PQconsumeInput(c) == 1 else { throw lost(c) }
            }
            guard let r = PQgetResult(c) else { break }
            let box = ResultBox(r)
            if box.status == PGRES_COPY_IN { return box }
            if answer?.status != PGRES_FATAL_ERROR { answer = box }
        }
        return answer ?? ResultBox(nil)
    }

    /// Until libpq's output buffer is on the wire (reading meanwhile, as libpq asks).
    private func send(_ c: OpaquePointer, until deadline: ContinuousClock.Instant?) throws {
        while true {
            let rc = PQflush(c)
            if rc == 0 { return }
            guard rc == 1 else { throw lost(c) }
            let ready = try wait(c, for: Int16(POLLOUT | POLLIN), until: deadline)
            if ready & Int16(POLLIN) != 0 { guard PQconsumeInput(c) == 1 else { throw lost(c) } }
        }
    }

    /// Polls the socket; past the deadline the connection is closed and reported lost.
    @discardableResult
    private func wait(_ c: OpaquePointer, for events: Int16, until deadline: ContinuousClock.Instant?) throws -> Int16 {
        while true {
            var timeout: Int32 = -1
            if let deadline {
                let left = deadline - ContinuousClock.now
                timeout = Int32(max(0, left / .milliseconds(1)).rounded(.up))
            }
            var fd = pollfd(fd: PQsocket(c), events: events, revents: 0)
            let rc = poll(&fd, 1, timeout)
            if rc > 0 { return fd.revents }
            if rc < 0 && errno == EINTR { continue }
            if rc < 0 { throw lost(c) }
            close()
            throw PGError(.connection, message: "no answer from the server within \(answerTimeoutMs) ms; connection closed")
        }
    }

    private func lost(_ c: OpaquePointer) -> PGError {
        PGError(.connection, message: String(cString: PQerrorMessage(c)).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// Owns a `PGresult` and clears it exactly once.
final class ResultBox {
    let result: OpaquePointer?

    init(_ result: OpaquePointer?) { self.result = result }
    deinit { if let result { PQclear(result) } }

    var status: ExecStatusType { result.map { PQresultStatus($0) } ?? PGRES_FATAL_ERROR }

    var affectedRows: Int {
        guard let result, let s = PQcmdTuples(result) else { return 0 }
        return Int(String(cString: s)) ?? 0
    }

    func check(_ conn: OpaquePointer) throws {
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_COPY_IN, PGRES_EMPTY_QUERY:
            return
        default:
            guard let result else {
                throw PGError(.connection, message: String(cString: PQerrorMessage(conn)))
            }
            let field = { (code: UInt8) -> String? in
                PQresultErrorField(result, Int32(code)).map { String(cString: $0) }
            }
            let state = field(UInt8(ascii: "C"))
            let message = field(UInt8(ascii: "M")) ?? String(cString: PQresultErrorMessage(result))
            let broken = PQstatus(conn) != CONNECTION_OK
            throw PGError(broken || state == nil ? .connection : .query, sqlState: state, message: message, detail: field(UInt8(ascii: "D")))
        }
    }

    /// The result's values in bytes, about what it took in libpq's buffer.
    var bytes: Int {
        guard let result else { return 0 }
        let (n, m) = (PQntuples(result), PQnfields(result))
        var total = 0
        for r in 0..<n {
            for f in 0..<m { total += Int(PQgetlength(result, r, f)) }
        }
        return total
    }

    func rows() -> [PGRow] {
        guard let result else { return [] }
        let n = Int(PQntuples(result))
        let m = Int(PQnfields(result))
        let columns = (0..<m).map { String(cString: PQfname(result, Int32($0))) }
        return (0..<n).map { r in
            PGRow(
                columns: columns,
                values: (0..<m).map { f in
                    PQgetisnull(result, Int32(r), Int32(f)) == 1 ? nil : String(cString: PQgetvalue(result, Int32(r), Int32(f)))
                })
        }
    }
}
