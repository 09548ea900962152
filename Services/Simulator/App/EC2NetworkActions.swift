import Foundation
import SimulatorCore

/// The network actions of the simulator's EC2 endpoint: the account's subnets (the agent reads
/// its usable zones and a copy's subnet from them) and its Elastic IPs (the traffic a workload
/// moves to a new primary).
extension EC2Endpoint {
    func network(_ action: String, _ r: EC2Request) async throws -> [XMLElement] {
        switch action {
        case "DescribeSubnets":
            let network = cloud.network
            var subnets = network.subnets
            let ids = r.list("SubnetId")
            if !ids.isEmpty { subnets = subnets.filter { ids.contains($0.id) } }
            for (name, values) in r.filters {
                subnets = subnets.filter { s in
                    switch name {
                    case "vpc-id": values.contains(network.vpcId)
                    case "availability-zone": values.contains(s.zone)
                    case "state": values.contains("available")
                    case "subnet-id": values.contains(s.id)
                    default: true
                    }
                }
            }
            return [
                .set(
                    "subnetSet",
                    subnets.map { s in
                        [
                            .text("subnetId", s.id), .text("state", "available"), .text("vpcId", network.vpcId), .text("cidrBlock", s.cidr),
                            .text("availableIpAddressCount", "4091"), .text("availabilityZone", s.zone),
                            .text("availabilityZoneId", cloud.market.zones.first { $0.name == s.zone }?.id ?? ""),
                            .text("defaultForAz", "false"), .text("mapPublicIpOnLaunch", "false"),
                        ]
                    })
            ]
        case "AllocateAddress":
            let address = await cloud.allocateAddress()
            return [.text("publicIp", address.publicIp), .text("domain", "vpc"), .text("allocationId", address.allocationId)]
        case "AssociateAddress":
            guard let allocation = r["AllocationId"], let instance = r["InstanceId"] else {
                throw EC2Fault.invalid("MissingParameter", "The request must contain the parameters AllocationId and InstanceId")
            }
            let association = try await cloud.associate(allocation, to: instance, allowReassociation: r["AllowReassociation"] == "true")
            return [.text("return", "true"), .text("associationId", association)]
        default:  // DescribeAddresses
            let ids = r.list("AllocationId")
            let addresses = await cloud.addresses.values.filter { ids.isEmpty || ids.contains($0.allocationId) }.sorted { $0.allocationId < $1.allocationId }
            for id in ids where !addresses.contains(where: { $0.allocationId == id }) {
                throw EC2Fault.invalid("InvalidAllocationID.NotFound", "The allocation ID '\(id)' does not exist")
            }
            return [
                .set(
                    "addressesSet",
                    addresses.map { a in
                        [.text("publicIp", a.publicIp), .text("allocationId", a.allocationId), .text("domain", "vpc")]
                            + (a.instanceId.map { [.text("instanceId", $0), .text("associationId", a.associationId ?? "")] } ?? [])
                    })
            ]
        }
    }
}

extension Sequence {
    /// `map` with an asynchronous transform, in order.
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
