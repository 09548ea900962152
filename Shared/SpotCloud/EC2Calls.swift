import Foundation

public struct SpotPrice: Sendable, Equatable {
    public var instanceType: String
    public var availabilityZone: String
    public var productDescription: String
    public var price: Double
    public var timestamp: Date
}

public struct EC2Instance: Sendable, Equatable {
    public var id: String
    public var instanceType: String
    public var availabilityZone: String?
    public var state: String
    /// `spot` for spot instances, nil for on-demand.
    public var lifecycle: String?
    public var imageId: String?
    public var launchTime: Date?
    public var privateIp: String?
    public var publicIp: String?
    public var tags: [String: String]
    /// What a copy of the instance must carry (see `LaunchEquivalence`).
    public var vpcId: String?
    public var subnetId: String?
    public var securityGroupIds: [String]
    public var instanceProfileArn: String?
    public var keyName: String?
    public var rootDeviceName: String?
    public var volumes: [AttachedVolume]
    public var metadataOptions: MetadataOptions?
    public var tenancy: String?
    public var detailedMonitoring: Bool
    public var ebsOptimized: Bool

    public struct AttachedVolume: Sendable, Equatable {
        public var deviceName: String
        public var volumeId: String
        public var deleteOnTermination: Bool
    }

    /// The instance metadata service's settings (IMDSv2 `required`, the hop limit).
    public struct MetadataOptions: Sendable, Equatable {
        public var httpTokens: String?
        public var hopLimit: Int?
        public var httpEndpoint: String?

        public init(httpTokens: String?, hopLimit: Int?, httpEndpoint: String?) {
            self.httpTokens = httpTokens
            self.hopLimit = hopLimit
            self.httpEndpoint = httpEndpoint
        }
    }

    public init(_ x: XMLNode) {
        id = x.value("instanceId") ?? ""
        instanceType = x.value("instanceType") ?? ""
        availabilityZone = x.value("placement", "availabilityZone")
        state = x.value("instanceState", "name") ?? ""
        lifecycle = x.value("instanceLifecycle")
        imageId = x.value("imageId")
        launchTime = x.value("launchTime").flatMap(EC2Client.date)
        privateIp = x.value("privateIpAddress")
        publicIp = x.value("ipAddress")
        tags = Dictionary(x.items("tagSet").compactMap { t in t.value("key").map { ($0, t.value("value") ?? "") } }) { a, _ in a }
        vpcId = x.value("vpcId")
        subnetId = x.value("subnetId")
        securityGroupIds = x.items("groupSet").compactMap { $0.value("groupId") }
        instanceProfileArn = x.value("iamInstanceProfile", "arn")
        keyName = x.value("keyName")
        rootDeviceName = x.value("rootDeviceName")
        volumes = x.items("blockDeviceMapping").compactMap { m in
            guard let device = m.value("deviceName"), let volume = m.value("ebs", "volumeId") else { return nil }
            return AttachedVolume(deviceName: device, volumeId: volume, deleteOnTermination: m.value("ebs", "deleteOnTermination") == "true")
        }
        metadataOptions =
            x["metadataOptions"] == nil
            ? nil
            : MetadataOptions(
                httpTokens: x.value("metadataOptions", "httpTokens"), hopLimit: x.value("metadataOptions", "httpPutResponseHopLimit").flatMap { Int($0) },
                httpEndpoint: x.value("metadataOptions", "httpEndpoint"))
        tenancy = x.value("placement", "tenancy")
        detailedMonitoring = x.value("monitoring", "state") == "enabled"
        ebsOptimized = x.value("ebsOptimized") == "true"
    }
}

/// An EBS volume's settings: what a copy of its instance gives the volume in its place.
public struct VolumeSettings: Sendable, Equatable {
    public var sizeGiB: Int
    public var volumeType: String
    public var iops: Int?
    public var throughput: Int?
    public var encrypted: Bool
    public var kmsKeyId: String?

    public init(sizeGiB: Int, volumeType: String, iops: Int?, throughput: Int?, encrypted: Bool, kmsKeyId: String?) {
        self.sizeGiB = sizeGiB
        self.volumeType = volumeType
        self.iops = iops
        self.throughput = throughput
        self.encrypted = encrypted
        self.kmsKeyId = kmsKeyId
    }
}

public struct EC2Volume: Sendable, Equatable {
    public var id: String
    public var settings: VolumeSettings

    public init(id: String, _ settings: VolumeSettings) {
        self.id = id
        self.settings = settings
    }
}

public struct EC2Subnet: Sendable, Equatable {
    public var id: String
    public var vpcId: String
    public var availabilityZone: String
    public var availableAddresses: Int

    public init(id: String, vpcId: String, availabilityZone: String, availableAddresses: Int) {
        self.id = id
        self.vpcId = vpcId
        self.availabilityZone = availabilityZone
        self.availableAddresses = availableAddresses
    }
}

public struct AvailabilityZone: Sendable, Equatable {
    public var name: String
    public var id: String?
    public var state: String
    public var region: String?
}

public enum MarketType: String, Sendable {
    case spot
    case onDemand = "on-demand"
}

public struct RunInstancesRequest: Sendable {
    public var imageId: String
    public var instanceType: String
    public var market: MarketType
    public var availabilityZone: String?
    public var subnetId: String?
    public var securityGroupIds: [String]
    public var keyName: String?
    public var userData: String?
    public var tags: [String: String]
    /// Makes a retried launch return the first launch's instance instead of a second one.
    public var clientToken: String?
    public var instanceProfileArn: String?
    public var blockDevices: [BlockDevice] = []
    public var metadataOptions: EC2Instance.MetadataOptions?
    public var tenancy: String?
    public var detailedMonitoring: Bool?
    public var ebsOptimized: Bool?
    /// Launch from this template (id, version); the request's other settings override it.
    public var launchTemplate: (id: String, version: String)?

    /// A volume of the new instance: the device and the EBS settings to give it.
    public struct BlockDevice: Sendable, Equatable {
        public var deviceName: String
        public var settings: VolumeSettings
        public var deleteOnTermination: Bool

        public init(deviceName: String, settings: VolumeSettings, deleteOnTermination: Bool) {
            self.deviceName = deviceName
            self.settings = settings
            self.deleteOnTermination = deleteOnTermination
        }
    }

    public init(
        imageId: String, instanceType: String, market: MarketType, availabilityZone: String? = nil, subnetId: String? = nil,
        securityGroupIds: [String] = [], keyName: String? = nil, userData: String? = nil, tags: [String: String] = [:], clientToken: String? = nil
    ) {
        self.imageId = imageId
        self.instanceType = instanceType
        self.market = market
        self.availabilityZone = availabilityZone
        self.subnetId = subnetId
        self.securityGroupIds = securityGroupIds
        self.keyName = keyName
        self.userData = userData
        self.tags = tags
        self.clientToken = clientToken
    }
}

extension EC2Client {
    static func date(_ s: String) -> Date? {
        (try? Date(s, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))) ?? (try? Date(s, strategy: Date.ISO8601FormatStyle()))
    }

    static func list(_ name: String, _ values: [String]) -> [(String, String)] {
        values.enumerated().map { ("\(name).\($0.offset + 1)", $0.element) }
    }

    static func filters(_ filters: [(String, [String])]) -> [(String, String)] {
        filters.enumerated().flatMap { i, f in [("Filter.\(i + 1).Name", f.0)] + list("Filter.\(i + 1).Value", f.1) }
    }

    /// Spot prices of these types (every zone unless one is named), newest first as EC2 sends them.
    public func describeSpotPriceHistory(
        instanceTypes: [String], availabilityZone: String? = nil, productDescriptions: [String] = ["Linux/UNIX"], startTime: Date? = nil
    ) async throws -> [SpotPrice] {
        var parameters = Self.list("InstanceType", instanceTypes) + Self.list("ProductDescription", productDescriptions)
        // as a filter: EC2 honours both forms, moto only this one
        if let availabilityZone { parameters += Self.filters([("availability-zone", [availabilityZone])]) }
        if let startTime { parameters.append(("StartTime", startTime.formatted(.iso8601))) }
        parameters.append(("MaxResults", "1000"))
        return try await paginate("DescribeSpotPriceHistory", parameters) { $0.items("spotPriceHistorySet") }.compactMap { x in
            guard let type = x.value("instanceType"), let az = x.value("availabilityZone"), let price = x.value("spotPrice").flatMap(Double.init),
                let at = x.value("timestamp").flatMap(Self.date)
            else { return nil }
            return SpotPrice(instanceType: type, availabilityZone: az, productDescription: x.value("productDescription") ?? "", price: price, timestamp: at)
        }
    }

    /// Instances by id or filter; without ids, pages of `pageSize` reservations (5–1000) are followed.
    public func describeInstances(ids: [String] = [], filters: [(String, [String])] = [], pageSize: Int = 1000) async throws -> [EC2Instance] {
        var parameters = Self.list("InstanceId", ids) + Self.filters(filters)
        if ids.isEmpty { parameters.append(("MaxResults", String(min(1000, max(5, pageSize))))) }
        return try await paginate("DescribeInstances", parameters) { page in
            page.items("reservationSet").flatMap { $0.items("instancesSet") }
        }.map(EC2Instance.init)
    }

    /// Launches one instance, spot (one-time, terminated on interruption) or on-demand.
    public func runInstances(_ r: RunInstancesRequest) async throws -> EC2Instance {
        let answer = try await call("RunInstances", Self.parameters(r))
        guard let instance = answer.items("instancesSet").first else { throw AWSError.malformed("RunInstances answered without an instance") }
        return EC2Instance(instance)
    }

    /// RunInstances' query parameters for a request.
    public static func parameters(_ r: RunInstancesRequest) -> [(String, String)] {
        var p: [(String, String)] = [("InstanceType", r.instanceType), ("MinCount", "1"), ("MaxCount", "1")]
        if let template = r.launchTemplate {
            p += [("LaunchTemplate.LaunchTemplateId", template.id), ("LaunchTemplate.Version", template.version)]
        }
        if !r.imageId.isEmpty { p.append(("ImageId", r.imageId)) }
        // a subnet names its zone; both at once are refused when they disagree
        if let subnet = r.subnetId {
            p.append(("SubnetId", subnet))
        } else if let az = r.availabilityZone {
            p.append(("Placement.AvailabilityZone", az))
        }
        if let tenancy = r.tenancy { p.append(("Placement.Tenancy", tenancy)) }
        p += Self.list("SecurityGroupId", r.securityGroupIds)
        if let key = r.keyName { p.append(("KeyName", key)) }
        if let profile = r.instanceProfileArn { p.append(("IamInstanceProfile.Arn", profile)) }
        for (i, device) in r.blockDevices.enumerated() {
            let (prefix, v) = ("BlockDeviceMapping.\(i + 1)", device.settings)
            p += [
                ("\(prefix).DeviceName", device.deviceName), ("\(prefix).Ebs.VolumeSize", String(v.sizeGiB)),
                ("\(prefix).Ebs.VolumeType", v.volumeType), ("\(prefix).Ebs.DeleteOnTermination", String(device.deleteOnTermination)),
                ("\(prefix).Ebs.Encrypted", String(v.encrypted)),
            ]
            if let iops = v.iops { p.append(("\(prefix).Ebs.Iops", String(iops))) }
            if let throughput = v.throughput { p.append(("\(prefix).Ebs.Throughput", String(throughput))) }
            if let kms = v.kmsKeyId { p.append(("\(prefix).Ebs.KmsKeyId", kms)) }
        }
        if let m = r.metadataOptions {
            if let tokens = m.httpTokens { p.append(("MetadataOptions.HttpTokens", tokens)) }
            if let hops = m.hopLimit { p.append(("MetadataOptions.HttpPutResponseHopLimit", String(hops))) }
            if let endpoint = m.httpEndpoint { p.append(("MetadataOptions.HttpEndpoint", endpoint)) }
        }
        if let monitoring = r.detailedMonitoring { p.append(("Monitoring.Enabled", String(monitoring))) }
        if let optimized = r.ebsOptimized { p.append(("EbsOptimized", String(optimized))) }
        if let data = r.userData { p.append(("UserData", Data(data.utf8).base64EncodedString())) }
        if let token = r.clientToken { p.append(("ClientToken", token)) }
        if r.market == .spot {
            p += [
                ("InstanceMarketOptions.MarketType", "spot"), ("InstanceMarketOptions.SpotOptions.SpotInstanceType", "one-time"),
                ("InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior", "terminate"),
            ]
        }
        if !r.tags.isEmpty {
            p.append(("TagSpecification.1.ResourceType", "instance"))
            for (i, tag) in r.tags.sorted(by: { $0.key < $1.key }).enumerated() {
                p += [("TagSpecification.1.Tag.\(i + 1).Key", tag.key), ("TagSpecification.1.Tag.\(i + 1).Value", tag.value)]
            }
        }
        return p
    }

    /// Volumes by id.
    public func describeVolumes(ids: [String]) async throws -> [EC2Volume] {
        guard !ids.isEmpty else { return [] }
        return try await call("DescribeVolumes", Self.list("VolumeId", ids)).items("volumeSet").compactMap { v in
            guard let id = v.value("volumeId"), let size = v.value("size").flatMap({ Int($0) }) else { return nil }
            return EC2Volume(
                id: id,
                VolumeSettings(
                    sizeGiB: size, volumeType: v.value("volumeType") ?? "gp2", iops: v.value("iops").flatMap { Int($0) },
                    throughput: v.value("throughput").flatMap { Int($0) }, encrypted: v.value("encrypted") == "true", kmsKeyId: v.value("kmsKeyId")))
        }
    }

    /// The available subnets of a VPC, in one zone or all.
    public func describeSubnets(vpcId: String, availabilityZone: String? = nil) async throws -> [EC2Subnet] {
        let filters = Self.filters([("vpc-id", [vpcId]), ("state", ["available"])] + (availabilityZone.map { [("availability-zone", [$0])] } ?? []))
        return try await call("DescribeSubnets", filters).items("subnetSet").compactMap { s in
            guard let id = s.value("subnetId"), let zone = s.value("availabilityZone") ?? availabilityZone else { return nil }
            return EC2Subnet(
                id: id, vpcId: s.value("vpcId") ?? vpcId, availabilityZone: zone,
                availableAddresses: s.value("availableIpAddressCount").flatMap { Int($0) } ?? 0)
        }
    }

    /// Terminates; answers each instance's state after the call (`shutting-down`, `terminated`).
    public func terminateInstances(ids: [String]) async throws -> [String: String] {
        let answer = try await call("TerminateInstances", Self.list("InstanceId", ids))
        return Dictionary(answer.items("instancesSet").compactMap { x in x.value("instanceId").map { ($0, x.value("currentState", "name") ?? "") } }) { a, _ in
            a
        }
    }

    public func createTags(resources: [String], tags: [String: String]) async throws {
        var p = Self.list("ResourceId", resources)
        for (i, tag) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            p += [("Tag.\(i + 1).Key", tag.key), ("Tag.\(i + 1).Value", tag.value)]
        }
        _ = try await call("CreateTags", p)
    }

    public func describeAvailabilityZones() async throws -> [AvailabilityZone] {
        try await call("DescribeAvailabilityZones").items("availabilityZoneInfo").map {
            AvailabilityZone(name: $0.value("zoneName") ?? "", id: $0.value("zoneId"), state: $0.value("zoneState") ?? "", region: $0.value("regionName"))
        }
    }
}
