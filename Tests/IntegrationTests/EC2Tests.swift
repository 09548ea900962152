import Foundation
import SpotCloud
import Testing
import ToolSupport

/// SpotCloud's EC2 client against moto's EC2 endpoint (started by the test command), a real
/// third-party implementation of the wire format: signed form posts in, namespaced XML out.
extension IntegrationTests {
    @Suite struct EC2Tests {
        func client() throws -> EC2Client {
            let url = try #require(ProcessInfo.processInfo.environment["SPOTGUARD_TEST_EC2_URL"].flatMap { URL(string: $0) }, "the test command starts moto")
            var c = EC2Client(
                region: "us-east-1", endpoint: url, credentials: StaticCredentials(AWSCredentials(accessKeyId: "testing", secretAccessKey: "testing")))
            c.backoffBase = .milliseconds(5)
            c.backoffCap = .milliseconds(20)
            return c
        }

        @Test func spotLaunchImageAndTerminate() async throws {
            let ec2 = try client()
            let zones = try await ec2.describeAvailabilityZones()
            #expect(zones.contains { $0.name == "us-east-1b" && $0.id == "use1-az1" && $0.state == "available" })

            let tag = UUID().uuidString
            let spot = try await ec2.runInstances(
                RunInstancesRequest(
                    imageId: "ami-12c6146b", instanceType: "m5.large", market: .spot, availabilityZone: "us-east-1b",
                    userData: "#!/bin/sh\nspotguard-agent --replica\n", tags: ["spotguard:test": tag, "Name": "primary"]))
            let onDemand = try await ec2.runInstances(
                RunInstancesRequest(
                    imageId: "ami-12c6146b", instanceType: "m5.large", market: .onDemand, availabilityZone: "us-east-1c", tags: ["spotguard:test": tag]))
            #expect(spot.id.hasPrefix("i-") && spot.lifecycle == "spot" && spot.availabilityZone == "us-east-1b")
            #expect(onDemand.lifecycle == nil && onDemand.availabilityZone == "us-east-1c")

            let found = try await ec2.describeInstances(filters: [("tag:spotguard:test", [tag])])
            #expect(Set(found.map(\.id)) == [spot.id, onDemand.id])
            #expect(found.first { $0.id == spot.id }?.tags["Name"] == "primary")
            #expect(found.allSatisfy { $0.state == "running" && $0.instanceType == "m5.large" })

            let image = try await ec2.createImage(instanceId: spot.id, name: "spotguard-\(tag)")
            #expect(image.hasPrefix("ami-"))
            #expect(try await ec2.describeImages(ids: [image]).map(\.state) == ["available"])

            try await ec2.createTags(resources: [spot.id], tags: ["spotguard:role": "old-primary"])
            #expect(try await ec2.describeInstances(ids: [spot.id]).first?.tags["spotguard:role"] == "old-primary")

            let terminated = try await ec2.terminateInstances(ids: [spot.id, onDemand.id])
            #expect(terminated == [spot.id: "shutting-down", onDemand.id: "shutting-down"])
            #expect(try await ec2.describeInstances(ids: [spot.id]).first?.state == "terminated")
        }

        @Test func pagesErrorsAndServerFailures() async throws {
            let ec2 = try client()
            let tag = UUID().uuidString
            for _ in 0..<7 {
                _ = try await ec2.runInstances(RunInstancesRequest(imageId: "ami-12c6146b", instanceType: "t3.micro", market: .spot, tags: ["page": tag]))
            }
            // pages of 5 reservations: every instance comes back exactly once
            let all = try await ec2.describeInstances(pageSize: 5)
            let mine = all.filter { $0.tags["page"] == tag }
            #expect(mine.count == 7 && Set(mine.map(\.id)).count == 7)
            #expect(all.count == Set(all.map(\.id)).count)

            await #expect(throws: AWSError.self) { try await ec2.terminateInstances(ids: ["i-0123456789abcdef0"]) }
            do {
                _ = try await ec2.terminateInstances(ids: ["i-0123456789abcdef0"])
            } catch let e as AWSError {
                #expect(e.code == "InvalidInstanceID.NotFound")
            }
            // a filter moto does not implement: an HTML 500, retried, then a server error
            do {
                _ = try await ec2.describeInstances(filters: [("instance-lifecycle", ["spot"])])
                Issue.record("moto answers this filter with a 500")
            } catch let AWSError.server(status, _, attempts) {
                #expect(status == 500 && attempts == ec2.maxAttempts)
            }
            // moto's spot price history is a placeholder, but its shape is EC2's
            let prices = try await ec2.describeSpotPriceHistory(instanceTypes: ["m5.large"], availabilityZone: "us-east-1a")
            #expect(!prices.isEmpty && prices.allSatisfy { $0.instanceType == "m5.large" && $0.availabilityZone == "us-east-1a" && $0.price > 0 })
        }

        /// Runs `Peers/launch_equivalence.py` (boto3 against moto) and reads its JSON.
        func peer(_ arguments: [String]) async throws -> (status: Int32, json: [String: Any]) {
            let url = try #require(ProcessInfo.processInfo.environment["SPOTGUARD_TEST_EC2_URL"])
            let python = ProcessInfo.processInfo.environment["SPOTGUARD_TEST_PYTHON"] ?? "python3"
            let script = TestStack.repoRoot.appendingPathComponent("Tests/Peers/launch_equivalence.py").path
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("equivalence-\(UUID()).json").path
            defer { try? FileManager.default.removeItem(atPath: out) }
            let status = try await ChildProcess(python, [script, url] + arguments, output: out).exitStatus()
            let json = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out)))) as? [String: Any] ?? [:]
            return (status, json)
        }

        /// A source as a real fleet has it (non-default VPC, two subnets, two security groups, an
        /// instance profile, a key, encrypted volumes, IMDSv2 required, detailed monitoring, user
        /// tags), set up and checked with boto3: the copy in another zone carries all of it, in
        /// the VPC's subnet there; a bare launch does not pass the same check; a zone where the
        /// VPC has no subnet is refused before anything is launched.
        @Test func aCopyCarriesTheSourcesProfileNetworkAndVolumes() async throws {
            let ec2 = try client()
            let setup = try await peer(["setup"])
            #expect(setup.status == 0)
            let source = try #require(setup.json["source"] as? String)
            let target = LaunchEquivalence.Target(
                imageId: "ami-12c6146b", instanceType: "c5.large", market: .spot, availabilityZone: "us-east-1b", userData: "#!/bin/sh\n",
                tags: ["spotguard:agent": "agent-1"], clientToken: UUID().uuidString)
            let copy = try await ec2.launchEquivalent(of: source, target)
            let checked = try await peer(["check", source, copy.id, "us-east-1b"])
            #expect(checked.status == 0, "differences: \(checked.json["differences"] ?? "none printed")")
            #expect((checked.json["copy"] as? [String: Any])?["subnet"] as? String == (setup.json["subnets"] as? [String: String])?["us-east-1b"])
            let tags = (checked.json["copy"] as? [String: Any])?["tags"] as? [String: String] ?? [:]
            #expect(tags["team"] == "payments" && tags["Name"]?.hasPrefix("web-") == true && tags["spotguard:agent"] == "agent-1")

            // what the agent launched before: an image, a type and a zone
            let bare = try await ec2.runInstances(
                RunInstancesRequest(imageId: "ami-12c6146b", instanceType: "c5.large", market: .spot, availabilityZone: "us-east-1b"))
            let bareCheck = try await peer(["check", source, bare.id, "us-east-1b"])
            #expect(bareCheck.status == 1)
            let settings = Set((bareCheck.json["differences"] as? [[String: Any]] ?? []).compactMap { $0["setting"] as? String })
            #expect(settings.isSuperset(of: ["vpc", "groups", "profile", "key", "metadata", "subnet"]), "\(settings)")

            var noSubnet = target
            noSubnet.availabilityZone = "us-east-1c"
            await #expect(throws: LaunchEquivalence.NoSubnet.self) { try await ec2.launchEquivalent(of: source, noSubnet) }
            _ = try await ec2.terminateInstances(ids: [source, copy.id, bare.id])
        }
    }
}
