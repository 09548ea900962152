import Foundation
import SpotCloud
import Testing

@Suite struct ImageRetentionTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func image(_ id: String, _ state: String, minutesAgo: Double) -> EC2Image {
        EC2Image(id: id, name: id, state: state, created: now.addingTimeInterval(-minutesAgo * 60))
    }

    func expired(_ images: [EC2Image], keep: Int, inUse: Set<String> = []) -> Set<String> {
        Set(ImageRetention.expired(images, keep: keep, now: now, pendingLimit: 600, inUse: inUse).map(\.id))
    }

    /// The newest `keep` available images stay, whatever order EC2 lists them in.
    @Test func keepsTheNewestAvailable() {
        let images = [image("b", "available", minutesAgo: 50), image("a", "available", minutesAgo: 90), image("c", "available", minutesAgo: 5)]
        #expect(expired(images, keep: 1) == ["a", "b"])
        #expect(expired(images, keep: 2) == ["a"])
        #expect(expired(images, keep: 0) == ["a", "b", "c"])
        #expect(expired(images, keep: 5).isEmpty)
    }

    /// A pending image is left while it may still become available; stuck past the limit, or
    /// failed, it goes even when it is the newest; an image a launch is using never goes.
    @Test func stuckAndFailedImagesGoInUseOnesStay() {
        let images = [
            image("fresh", "pending", minutesAgo: 2), image("stuck", "pending", minutesAgo: 11), image("broken", "failed", minutesAgo: 1),
            image("kept", "available", minutesAgo: 30), image("old", "available", minutesAgo: 60),
        ]
        #expect(expired(images, keep: 1) == ["stuck", "broken", "old"])
        #expect(expired(images, keep: 0, inUse: ["kept", "stuck"]) == ["broken", "old"])
    }
}
