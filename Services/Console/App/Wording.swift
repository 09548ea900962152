import Foundation

/// The dashboard's words for the codes the API and the database speak (`auto_switch`,
/// `ondemand`, `out-of-sync`, …). The code stays in the API, in class names and in the page's
/// data; people read these.
enum Wording {
    static let words: [String: String] = [
        // agents
        "online": "Online", "offline": "Offline", "switching": "Switching", "deleted": "Deleted", "pending": "Pending",
        "spot": "Spot", "ondemand": "On-demand",
        // switches
        "auto_switch": "Automatic switch", "manual": "Manual", "emergency": "Emergency", "rebalance": "Rebalance recommendation",
        "failover": "Failover",
        // replicas
        "launching": "Launching", "syncing": "Syncing", "ready": "Ready", "promoted": "Promoted", "terminated": "Terminated", "failed": "Failed",
        "automatic-rebalance": "Automatic (rebalance)", "automatic-termination": "Automatic (termination)", "initializing": "Initializing",
        "synced": "Synced", "out-of-sync": "Out of sync",
        // prices
        "measured": "Measured", "interpolated": "Interpolated", "no data": "No data", "unknown": "Unknown",
        // traffic steps
        "elastic_ip": "Elastic IP", "target_register": "Target registered", "target_deregister": "Target deregistered", "dns_record": "DNS record",
        "done": "Done",
    ]

    /// The words for `code`; an unknown code with its separators as spaces, capitalised.
    static func of(_ code: String) -> String {
        if let word = words[code] { return word }
        let spaced = code.replacingOccurrences(of: "_", with: " ").replacingOccurrences(of: "-", with: " ")
        return spaced.prefix(1).uppercased() + spaced.dropFirst()
    }
}
