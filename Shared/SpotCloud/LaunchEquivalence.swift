import Foundation

/// Every instance SpotGuard launches for a workload (a replica, a switch target, a recovery)
/// is an equivalent of the instance it stands in for: without the source's instance profile
/// the new agent has no credentials, without its subnet and security groups it is unreachable,
/// without its volumes' settings it is not the same machine. Pure: `request` decides from what
/// `DescribeInstances` and `DescribeVolumes` said of the source.
public enum LaunchEquivalence {
    /// The source's VPC has no available subnet in the zone asked for: that zone cannot hold a
    /// copy (the decision should not pick it).
    public struct NoSubnet: Error, CustomStringConvertible {
        public var vpcId: String
        public var availabilityZone: String
        public var description: String { "VPC \(vpcId) has no available subnet in \(availabilityZone)" }
    }

    /// What differs from the source: the type, the zone (and so the subnet), the market, the
    /// image (an image of the source for a switch), and the agent's user data and tags.
    public struct Target: Sendable {
        public var imageId: String
        public var instanceType: String
        public var market: MarketType
        public var availabilityZone: String
        public var userData: String?
        /// Added to the source's own tags (the `spotguard:` ones are the target's alone).
        public var tags: [String: String]
        public var clientToken: String?

        public init(
            imageId: String, instanceType: String, market: MarketType, availabilityZone: String, userData: String?, tags: [String: String],
            clientToken: String?
        ) {
            self.imageId = imageId
            self.instanceType = instanceType
            self.market = market
            self.availabilityZone = availabilityZone
            self.userData = userData
            self.tags = tags
            self.clientToken = clientToken
        }
    }

    /// The tags a copy carries: the source's user tags (not AWS's `aws:` ones, which only AWS
    /// may set, nor the source's `spotguard:` ones), then the target's.
    public static func tags(of source: EC2Instance, adding target: [String: String]) -> [String: String] {
        source.tags.filter { !$0.key.hasPrefix("aws:") && !$0.key.hasPrefix("spotguard:") }.merging(target) { _, new in new }
    }

    /// The launch template the source came from (EC2 tags instances launched from one), if any.
    public static func template(of source: EC2Instance) -> (id: String, version: String)? {
        guard let id = source.tags["aws:ec2launchtemplate:id"] else { return nil }
        return (id, source.tags["aws:ec2launchtemplate:version"] ?? "$Default")
    }

    /// The RunInstances request for a copy of `source` in `subnetId` (the source's VPC, the
    /// target's zone). A source launched from a template is launched from the same template and
    /// version (its volumes, key, network interfaces and everything DescribeInstances cannot
    /// show come from there), overriding the type, the subnet, the market, the user data and the
    /// tags, and restating what the source actually runs with where a launch may have
    /// overridden the template: security groups, instance profile, metadata options and
    /// monitoring (without that, a source given its profile at launch would have a copy with
    /// none). Otherwise every setting is copied: those, the key, volumes (device, size, type,
    /// IOPS, throughput, encryption and key, delete-on-termination), tenancy, EBS optimisation.
    public static func request(copying source: EC2Instance, volumes: [EC2Volume], subnetId: String?, target: Target) -> RunInstancesRequest {
        var r = RunInstancesRequest(
            imageId: target.imageId, instanceType: target.instanceType, market: target.market, availabilityZone: target.availabilityZone,
            subnetId: subnetId, userData: target.userData, tags: tags(of: source, adding: target.tags), clientToken: target.clientToken)
        r.securityGroupIds = source.securityGroupIds
        r.instanceProfileArn = source.instanceProfileArn
        r.metadataOptions = source.metadataOptions
        r.detailedMonitoring = source.detailedMonitoring
        if let template = template(of: source) {
            r.launchTemplate = template
            return r
        }
        r.keyName = source.keyName
        let byId = Dictionary(volumes.map { ($0.id, $0) }) { a, _ in a }
        r.blockDevices = source.volumes.compactMap { attached in
            guard var v = byId[attached.volumeId]?.settings else { return nil }
            // only what the volume type takes: EC2 refuses IOPS on gp2, throughput off gp3, a key unencrypted
            if !["io1", "io2", "gp3"].contains(v.volumeType) { v.iops = nil }
            if v.volumeType != "gp3" { v.throughput = nil }
            if !v.encrypted { v.kmsKeyId = nil }
            return .init(deviceName: attached.deviceName, settings: v, deleteOnTermination: attached.deleteOnTermination)
        }
        r.tenancy = source.tenancy
        r.ebsOptimized = source.ebsOptimized
        return r
    }

    /// The subnet for a copy in `availabilityZone`: the source's own when the zone is the
    /// same, else the VPC's subnet there with the most free addresses.
    public static func subnet(for source: EC2Instance, in availabilityZone: String, candidates: [EC2Subnet]) -> String? {
        if source.availabilityZone == availabilityZone, let own = source.subnetId { return own }
        return candidates.filter { $0.availabilityZone == availabilityZone }.max { ($0.availableAddresses, $1.id) < ($1.availableAddresses, $0.id) }?.id
    }
}

extension EC2Client {
    /// Launches an equivalent of the running instance `sourceId` (see `LaunchEquivalence`).
    /// Throws `LaunchEquivalence.NoSubnet` when the source's VPC has no subnet in the target zone.
    public func launchEquivalent(of sourceId: String, _ target: LaunchEquivalence.Target) async throws -> EC2Instance {
        guard let source = try await describeInstances(ids: [sourceId]).first else { throw AWSError.malformed("DescribeInstances did not return \(sourceId)") }
        let volumes = try await describeVolumes(ids: source.volumes.map(\.volumeId))
        var subnet: String?
        if let vpc = source.vpcId {
            let candidates =
                source.availabilityZone == target.availabilityZone && source.subnetId != nil
                ? [] : try await describeSubnets(vpcId: vpc, availabilityZone: target.availabilityZone)
            subnet = LaunchEquivalence.subnet(for: source, in: target.availabilityZone, candidates: candidates)
            guard subnet != nil else { throw LaunchEquivalence.NoSubnet(vpcId: vpc, availabilityZone: target.availabilityZone) }
        }
        return try await runInstances(LaunchEquivalence.request(copying: source, volumes: volumes, subnetId: subnet, target: target))
    }
}
