import Foundation

/// An AMI as `DescribeImages` tells it.
public struct EC2Image: Sendable, Equatable {
    public var id: String
    public var name: String?
    /// `pending`, `available`, `failed`, …
    public var state: String
    public var created: Date?
    /// The EBS snapshots behind it: deleted with it, once it is deregistered.
    public var snapshotIds: [String]
    public var tags: [String: String]

    public init(id: String, name: String?, state: String, created: Date?, snapshotIds: [String] = [], tags: [String: String] = [:]) {
        self.id = id
        self.name = name
        self.state = state
        self.created = created
        self.snapshotIds = snapshotIds
        self.tags = tags
    }
}

extension EC2Client {
    /// An image of a running instance without rebooting it, tagged at creation (so an image
    /// is never left untagged for its owner to find).
    public func createImage(instanceId: String, name: String, tags: [String: String] = [:], noReboot: Bool = true) async throws -> String {
        var parameters = [("InstanceId", instanceId), ("Name", name), ("NoReboot", noReboot ? "true" : "false")]
        if !tags.isEmpty {
            parameters.append(("TagSpecification.1.ResourceType", "image"))
            for (i, tag) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
                parameters += [("TagSpecification.1.Tag.\(i + 1).Key", tag.key), ("TagSpecification.1.Tag.\(i + 1).Value", tag.value)]
            }
        }
        guard let id = try await call("CreateImage", parameters).value("imageId") else { throw AWSError.malformed("CreateImage answered without an image id") }
        return id
    }

    public func describeImages(ids: [String]) async throws -> [EC2Image] {
        Self.images(try await call("DescribeImages", Self.list("ImageId", ids)))
    }

    /// The account's own images carrying tag `key` = `value`.
    public func ownImages(tagged key: String, _ value: String) async throws -> [EC2Image] {
        Self.images(try await call("DescribeImages", [("Owner.1", "self")] + Self.filters([("tag:\(key)", [value])])))
    }

    static func images(_ answer: XMLNode) -> [EC2Image] {
        answer.items("imagesSet").map { x in
            EC2Image(
                id: x.value("imageId") ?? "", name: x.value("name"), state: x.value("imageState") ?? "", created: x.value("creationDate").flatMap(Self.date),
                snapshotIds: x.items("blockDeviceMapping").compactMap { $0.value("ebs", "snapshotId") },
                tags: Dictionary(x.items("tagSet").compactMap { t in t.value("key").map { ($0, t.value("value") ?? "") } }) { a, _ in a })
        }
    }

    /// Deregisters the image, then deletes its snapshots (a registered image's snapshots cannot
    /// be deleted; instances launched from it keep their own volumes).
    public func deleteImage(_ image: EC2Image) async throws {
        _ = try await call("DeregisterImage", [("ImageId", image.id)])
        for snapshot in image.snapshotIds {
            do {
                _ = try await call("DeleteSnapshot", [("SnapshotId", snapshot)])
            } catch let error as AWSError where error.code == "InvalidSnapshot.NotFound" {
                continue  // deleted by an earlier, interrupted clean-up
            }
        }
    }
}

/// Which of an agent's images go: the images made for switches and recovery are needed only
/// until the new instance runs; the newest `keep` available ones stay as restore points. An
/// image still pending after `pendingLimit` (or failed) is cleaned up, not leaked; the images
/// in `inUse` (a launch under way) never go.
public enum ImageRetention {
    public static func expired(_ images: [EC2Image], keep: Int, now: Date, pendingLimit: TimeInterval, inUse: Set<String> = []) -> [EC2Image] {
        let candidates = images.filter { !inUse.contains($0.id) }
        let available = candidates.filter { $0.state == "available" }.sorted { ($0.created ?? .distantPast) > ($1.created ?? .distantPast) }
        let stale = candidates.filter { image in
            switch image.state {
            case "available": false
            case "pending": now.timeIntervalSince(image.created ?? now) > pendingLimit
            default: true  // failed, invalid, error: never usable
            }
        }
        return stale + available.dropFirst(max(0, keep))
    }
}
