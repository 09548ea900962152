/// A failure of something a piece of work depends on (the database, the broker), not of the
/// work itself: the same work will succeed once the dependency is back. Consumers hold a
/// message through such a failure instead of counting it towards dead-lettering.
public protocol TransientFailure: Error {
    var isTransient: Bool { get }
}

extension Error {
    /// True when the error says a dependency is out (see `TransientFailure`).
    public var isTransientFailure: Bool { (self as? any TransientFailure)?.isTransient ?? false }
}
