import Foundation
import Logging
import SpotCloud

/// The agent's own images (switches, recovery): tagged at creation, waited for within
/// `image_wait_seconds` (a stuck one is deleted, not leaked), and pruned to `image_retention`
/// once used.
extension Agent {
    /// An image of this instance, available: answers it and when it became available.
    func makeImage(of identity: Identity, agent: String, name: String, purpose: String) async throws -> (id: String, ready: Date) {
        let image = try await ec2.createImage(
            instanceId: identity.instanceId, name: name, tags: ["spotguard:agent": agent, "spotguard:purpose": purpose, "Name": name])
        let deadline = Date().addingTimeInterval(configuration.imageWaitSeconds)
        while Date() < deadline {
            let found = try await ec2.describeImages(ids: [image]).first
            switch found?.state {
            case "available": return (image, api.clock.now())
            case "pending", nil: try await Task.sleep(for: .seconds(min(5, configuration.imageWaitSeconds / 20)))
            default:
                await deleteImages([found!], why: "image \(found!.state)")
                throw Refused(description: "image \(image) is \(found!.state)")
            }
        }
        if let found = try? await ec2.describeImages(ids: [image]).first { await deleteImages([found], why: "not available in time") }
        throw Refused(description: "image \(image) not available after \(Int(configuration.imageWaitSeconds)) s: deleted")
    }

    /// Deletes what `ImageRetention` says has expired among this agent's images. Best effort:
    /// a failure is logged and tried again after the next image.
    func pruneImages(agent: String, inUse: Set<String> = []) async {
        do {
            let images = try await ec2.ownImages(tagged: "spotguard:agent", agent)
            let expired = ImageRetention.expired(
                images, keep: configuration.imageRetention, now: api.clock.now(), pendingLimit: configuration.imageWaitSeconds, inUse: inUse)
            await deleteImages(expired, why: "retention \(configuration.imageRetention)")
        } catch {
            logger.warning("images not pruned", metadata: ["error": "\(error)"])
        }
    }

    func deleteImages(_ images: [EC2Image], why: String) async {
        for image in images {
            do {
                try await ec2.deleteImage(image)
                logger.info("image deleted", metadata: ["image": "\(image.id)", "snapshots": "\(image.snapshotIds.count)", "why": "\(why)"])
            } catch {
                logger.warning("image not deleted", metadata: ["image": "\(image.id)", "error": "\(error)"])
            }
        }
    }
}
