import Crypto
import Foundation

extension UUID {
    /// A name-based UUID (RFC 9562 version 5): the same namespace and name always give the same
    /// id, so a fact whose sender gave it no id of its own still gets one that a retry repeats.
    public static func nameBased(in namespace: UUID, _ name: String) -> UUID {
        let space = withUnsafeBytes(of: namespace.uuid) { Array($0) }
        var hash = Array(Insecure.SHA1.hash(data: space + Array(name.utf8)).prefix(16))
        hash[6] = (hash[6] & 0x0F) | 0x50
        hash[8] = (hash[8] & 0x3F) | 0x80
        return hash.withUnsafeBytes { UUID(uuid: $0.load(as: uuid_t.self)) }
    }
}
