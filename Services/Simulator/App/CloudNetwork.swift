import Foundation

/// The simulated account's network and identity, enforced as EC2 enforces them: one VPC and
/// no default VPC (a launch must name a subnet, which names the zone), a subnet in every zone
/// but the last (so the rule that a zone without a subnet is never chosen is exercised), one
/// security group, and the workloads' instance profile: an instance launched without it has no
/// credentials in its metadata service, and its agent cannot call EC2.
struct SimNetwork: Sendable {
    struct Subnet: Sendable {
        var id: String
        var zone: String
        var cidr: String
    }

    let vpcId: String
    let subnets: [Subnet]
    let securityGroupId: String
    let profileName = "spotguard-sim-workload"
    let profileArn: String
    let profileId: String

    init(zones: [String], ownerId: String) {
        vpcId = Cloud.hexId("vpc-")
        subnets = zones.dropLast().enumerated().map { Subnet(id: Cloud.hexId("subnet-"), zone: $0.element, cidr: "10.0.\($0.offset * 16).0/20") }
        securityGroupId = Cloud.hexId("sg-")
        profileArn = "arn:aws:iam::\(ownerId):instance-profile/\(profileName)"
        profileId = "AIPA" + Cloud.randomId(17, upper: true)
    }

    /// The subnet a launch names, checked against the zone it may also name.
    func subnet(_ id: String?, zone: String?) throws -> Subnet {
        guard let id else {
            throw EC2Fault.invalid("VPCIdNotSpecified", "No default VPC for this user. Specify a subnet (SubnetId) of one of the account's VPCs.")
        }
        guard let subnet = subnets.first(where: { $0.id == id }) else {
            throw EC2Fault.invalid("InvalidSubnetID.NotFound", "The subnet ID '\(id)' does not exist")
        }
        if let zone, zone != subnet.zone {
            throw EC2Fault.invalid("InvalidParameterValue", "Value (\(zone)) for parameter availabilityZone is invalid. Subnet \(id) is in \(subnet.zone).")
        }
        return subnet
    }

    /// The instance profile a launch names (by ARN or name), if any: only the account's own exists.
    func profile(_ requested: String?) throws -> String? {
        guard let requested else { return nil }
        guard requested == profileArn || requested == profileName else {
            throw EC2Fault.invalid(
                "InvalidParameterValue", "Value (\(requested)) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile.")
        }
        return profileArn
    }

    func checkGroups(_ ids: [String]) throws {
        for id in ids where id != securityGroupId {
            throw EC2Fault.invalid("InvalidGroup.NotFound", "The security group '\(id)' does not exist in VPC '\(vpcId)'")
        }
    }
}

/// An Elastic IP of the account: the workloads' public entry points.
struct SimAddress: Sendable {
    var allocationId: String
    var publicIp: String
    var instanceId: String?
    var associationId: String?
}

extension Cloud {
    /// A new Elastic IP (AllocateAddress).
    func allocateAddress() -> SimAddress {
        let address = SimAddress(allocationId: Self.hexId("eipalloc-"), publicIp: "203.0.113.\(addresses.count % 250 + 1)")
        addresses[address.allocationId] = address
        return address
    }

    /// AssociateAddress: the address moves to `instanceId` (a running or pending instance);
    /// from another instance only with `allowReassociation`.
    func associate(_ allocationId: String, to instanceId: String, allowReassociation: Bool) throws -> String {
        guard var address = addresses[allocationId] else {
            throw EC2Fault.invalid("InvalidAllocationID.NotFound", "The allocation ID '\(allocationId)' does not exist")
        }
        guard let instance = instances[instanceId], instance.state == .running || instance.state == .pending else {
            throw EC2Fault.invalid("InvalidInstanceID", "The instance ID '\(instanceId)' is not in a valid state for this operation")
        }
        if let current = address.instanceId, current != instanceId, !allowReassociation {
            throw EC2Fault.invalid(
                "Resource.AlreadyAssociated", "resource \(allocationId) is already associated with associate-id \(address.associationId ?? "")")
        }
        if address.instanceId != instanceId {
            address.instanceId = instanceId
            address.associationId = Self.hexId("eipassoc-")
            addresses[allocationId] = address
            record("address_associated", instance, "\(address.publicIp) (\(allocationId))")
        }
        return address.associationId ?? ""
    }

    /// A terminated instance gives its addresses back (EC2 disassociates them).
    func releaseAddresses(of instanceId: String) {
        for (id, address) in addresses where address.instanceId == instanceId {
            addresses[id]?.instanceId = nil
            addresses[id]?.associationId = nil
        }
    }

    func publicIp(of instanceId: String) -> String? { addresses.values.first { $0.instanceId == instanceId }?.publicIp }
}
