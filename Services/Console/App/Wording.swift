import Foundation

/// The dashboard's words for the codes the API and the database speak (`auto_switch`,
/// `ondemand`, `out-of-sync`, …). The code stays in the API, in class names and in the page's
/// data; people read these.
enum Wording {
    /// Only the codes whose words are not the code itself with spaces and a capital.
    static let words: [String: String] = [
        "ondemand": "On-demand", "auto_switch": "Automatic switch", "rebalance": "Rebalance recommendation",
        "automatic-rebalance": "Automatic (rebalance)", "automatic-termination": "Automatic (termination)",
        "elastic_ip": "Elastic IP", "target_register": "Target registered", "target_deregister": "Target deregistered", "dns_record": "DNS record",
    ]

    /// The words for `code`; an unknown code with its separators as spaces, capitalised.
    static func of(_ code: String) -> String {
        if let word = words[code] { return word }
        let spaced = code.replacingOccurrences(of: "_", with: " ").replacingOccurrences(of: "-", with: " ")
        return spaced.prefix(1).uppercased() + spaced.dropFirst()
    }
}
