import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SimulatorCore
import SpotCloud

/// Checks a request's Signature Version 4 the way EC2 does: the `Authorization` header's
/// credential names a known key, `X-Amz-Date` is within 15 minutes, and the signature over the
/// signed headers, path, query and body matches one computed with the key's secret.
struct RequestAuthenticator: Sendable {
    /// access key id → secret and, for temporary credentials, the session token they need
    let keys: [String: (secret: String, token: String?)]

    func check(method: String, path: String, query: String?, headers: [(String, String)], body: Data, now: Date = Date()) -> EC2Fault? {
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
        guard let authorization = header("authorization") else {
            return EC2Fault(status: 401, code: "MissingAuthenticationToken", message: "Request is missing Authentication Token")
        }
        guard authorization.hasPrefix("AWS4-HMAC-SHA256 ") else {
            return EC2Fault(status: 401, code: "IncompleteSignature", message: "Unsupported signature algorithm")
        }
        var fields: [String: String] = [:]
        for part in authorization.dropFirst("AWS4-HMAC-SHA256 ".count).split(separator: ",") {
            let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
        guard let credential = fields["Credential"], let signedList = fields["SignedHeaders"], let signature = fields["Signature"] else {
            return EC2Fault(status: 401, code: "IncompleteSignature", message: "Authorization header requires Credential, SignedHeaders and Signature")
        }
        let scope = credential.split(separator: "/").map(String.init)
        guard scope.count == 5, scope[3] == "ec2", scope[4] == "aws4_request" else {
            return EC2Fault(status: 401, code: "IncompleteSignature", message: "Credential should be scoped to a valid region and the ec2 service")
        }
        guard let key = keys[scope[0]] else {
            return EC2Fault(status: 401, code: "AuthFailure", message: "AWS was not able to validate the provided access credentials")
        }
        guard let amz = header("x-amz-date"), let date = Self.date(amz), amz.hasPrefix(scope[1]) else {
            return EC2Fault(status: 401, code: "IncompleteSignature", message: "X-Amz-Date is missing or does not match the credential scope")
        }
        guard abs(date.timeIntervalSince(now)) <= 900 else {
            return EC2Fault(status: 401, code: "RequestExpired", message: "Request has expired. Timestamp date is \(amz)")
        }
        let names = signedList.split(separator: ";").map(String.init)
        let token = header("x-amz-security-token")
        if let needed = key.token, token != needed || !names.contains("x-amz-security-token") {
            return EC2Fault(status: 401, code: "AuthFailure", message: "AWS was not able to validate the provided access credentials")
        }
        let signed = names.filter { $0 != "x-amz-date" && $0 != "x-amz-security-token" }.compactMap { n in header(n).map { (n, $0) } }
        guard let host = header("host"), let url = URL(string: "http://\(host)\(path)" + (query.map { $0.isEmpty ? "" : "?\($0)" } ?? "")) else {
            return EC2Fault(status: 401, code: "IncompleteSignature", message: "the Host header is required")
        }
        let expected = SigV4Signer(region: scope[2], service: "ec2").sign(
            method: method, url: url, headers: signed, body: body,
            credentials: AWSCredentials(accessKeyId: scope[0], secretAccessKey: key.secret, sessionToken: names.contains("x-amz-security-token") ? token : nil),
            date: date)
        guard expected.signature == signature else {
            return EC2Fault(
                status: 403, code: "SignatureDoesNotMatch",
                message: "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
        }
        return nil
    }

    /// `20150830T123600Z`
    static func date(_ s: String) -> Date? {
        guard s.count == 16 else { return nil }
        let iso =
            "\(s.prefix(4))-\(s.dropFirst(4).prefix(2))-\(s.dropFirst(6).prefix(2))T\(s.dropFirst(9).prefix(2)):\(s.dropFirst(11).prefix(2)):\(s.dropFirst(13).prefix(2))Z"
        return try? Date(iso, strategy: .iso8601)
    }
}

/// The EC2 Query API subset the agent uses, in AWS's wire format: form-encoded POST (or GET with
/// a query string) at `/`, SigV4-signed, answered with `<ActionResponse xmlns=…>` documents or
/// `<Response><Errors>…` with AWS's codes and statuses.
struct EC2Endpoint: Sendable {
    let cloud: Cloud
    let authenticator: RequestAuthenticator

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.post("/") { request, _ in try await handle(request) }
        router.get("/") { request, _ in try await handle(request) }
    }

    func handle(_ request: Request) async throws -> Response {
        let requestId = UUID().uuidString.lowercased()
        let body = Data(try await request.body.collect(upTo: 1 << 20).readableBytesView)
        var headers = request.headers.map { ($0.name.canonicalName, $0.value) }
        if let authority = request.head.authority, !headers.contains(where: { $0.0 == "host" }) { headers.append(("host", authority)) }
        let query = request.uri.query
        if let fault = authenticator.check(method: request.method.rawValue, path: request.uri.path, query: query, headers: headers, body: body) {
            return Self.error(fault, requestId)
        }
        var parameters = EC2Request(form: query ?? "").parameters
        parameters.merge(EC2Request(form: String(decoding: body, as: UTF8.self)).parameters) { _, body in body }
        let r = EC2Request(parameters: parameters)
        do {
            guard let action = r.action else { throw EC2Fault.invalid("MissingAction", "The request must contain the parameter Action") }
            let answer: [XMLElement]
            switch action {
            case "DescribeSpotPriceHistory": answer = try await describeSpotPriceHistory(r)
            case "DescribeInstances": answer = try await describeInstances(r)
            case "RunInstances": answer = try await runInstances(r)
            case "TerminateInstances": answer = try await terminateInstances(r)
            case "CreateImage":
                guard let id = r["InstanceId"] else { throw EC2Fault.invalid("MissingParameter", "The request must contain the parameter InstanceId") }
                guard let name = r["Name"], (3...128).contains(name.count) else {
                    throw EC2Fault.invalid("InvalidParameterValue", "AMI names must be between 3 and 128 characters long")
                }
                var tags: [String: String] = [:]
                for i in r.indices("TagSpecification") {
                    guard r["TagSpecification.\(i).ResourceType"] == "image" else {
                        throw EC2Fault.invalid("InvalidParameterValue", "only image tags are kept by this simulator's CreateImage")
                    }
                    tags.merge(r.tags("TagSpecification.\(i).Tag")) { _, new in new }
                }
                answer = [.text("imageId", try await cloud.createImage(instanceId: id, name: name, tags: tags))]
            case "DescribeImages": answer = try await describeImages(r)
            case "DeregisterImage":
                guard let id = r["ImageId"] else { throw EC2Fault.invalid("MissingParameter", "The request must contain the parameter ImageId") }
                try await cloud.deregisterImage(id)
                answer = [.text("return", "true")]
            case "CreateTags":
                let ids = r.list("ResourceId")
                guard !ids.isEmpty else { throw EC2Fault.invalid("MissingParameter", "The request must contain the parameter ResourceId") }
                try await cloud.tag(ids, r.tags("Tag"))
                answer = [.text("return", "true")]
            case "DescribeSubnets", "AllocateAddress", "AssociateAddress", "DescribeAddresses":
                answer = try await network(action, r)
            case "DescribeAvailabilityZones":
                answer = [
                    .set(
                        "availabilityZoneInfo",
                        cloud.market.zones.map {
                            [
                                .text("zoneName", $0.name), .text("zoneState", "available"), .text("regionName", cloud.market.region), .text("zoneId", $0.id),
                                .text("zoneType", "availability-zone"), .node("messageSet", []),
                            ]
                        })
                ]
            default:
                throw EC2Fault.invalid("InvalidAction", "The action \(action) is not valid for this web service.")
            }
            return Self.xml(.ok, EC2Answer.document(action: action, requestId: requestId, answer))
        } catch let fault as EC2Fault {
            return Self.error(fault, requestId)
        }
    }

    static func xml(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/xml;charset=UTF-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func error(_ fault: EC2Fault, _ requestId: String) -> Response {
        xml(HTTPResponse.Status(code: fault.status), EC2Answer.error(code: fault.code, message: fault.message, requestId: requestId))
    }

    static func time(_ raw: String?, _ name: String) throws -> Date? {
        guard let raw else { return nil }
        guard let date = EC2Answer.parseTime(raw) else {
            throw EC2Fault.invalid("InvalidParameterValue", "Value (\(raw)) for parameter \(name) is invalid. Expected: an ISO 8601 time")
        }
        return date
    }

    // MARK: actions

    func describeSpotPriceHistory(_ r: EC2Request) async throws -> [XMLElement] {
        let filters = r.filters
        let types = Set(r.list("InstanceType") + (filters["instance-type"] ?? []))
        let zones = Set((r["AvailabilityZone"].map { [$0] } ?? []) + (filters["availability-zone"] ?? []))
        let products = r.list("ProductDescription") + (filters["product-description"] ?? [])
        let (start, end) = (try Self.time(r["StartTime"], "StartTime"), try Self.time(r["EndTime"], "EndTime"))
        let max = Int(r["MaxResults"] ?? "1000") ?? 1000
        guard (5...1000).contains(max) else { throw EC2Fault.invalid("InvalidParameterValue", "MaxResults must be between 5 and 1000") }
        let offset = try Self.offset(r["NextToken"])
        // Linux only: the simulated market prices Linux/UNIX
        let linux = products.isEmpty || products.contains { $0.hasPrefix("Linux/UNIX") }
        let all = linux ? await cloud.spotPriceHistory(types: types, zones: zones, start: start, end: end) : []
        let page = all.dropFirst(offset).prefix(max)
        let next = offset + page.count < all.count ? Data("\(offset + page.count)".utf8).base64EncodedString() : ""
        return [
            .set(
                "spotPriceHistorySet",
                page.map {
                    [
                        .text("instanceType", $0.type), .text("productDescription", "Linux/UNIX"), .text("spotPrice", String(format: "%.6f", $0.price)),
                        .text("timestamp", EC2Answer.time($0.at)), .text("availabilityZone", $0.zone),
                    ]
                }),
            .text("nextToken", next),
        ]
    }

    static func offset(_ token: String?) throws -> Int {
        guard let token, !token.isEmpty else { return 0 }
        guard let data = Data(base64Encoded: token), let n = Int(String(decoding: data, as: UTF8.self)), n >= 0 else {
            throw EC2Fault.invalid("InvalidNextToken", "The specified token is invalid")
        }
        return n
    }

    func describeInstances(_ r: EC2Request) async throws -> [XMLElement] {
        let ids = r.list("InstanceId")
        var instances = await cloud.allInstances
        if !ids.isEmpty {
            for id in ids where !instances.contains(where: { $0.id == id }) {
                throw EC2Fault.invalid(
                    id.hasPrefix("i-") ? "InvalidInstanceID.NotFound" : "InvalidInstanceID.Malformed", "The instance ID '\(id)' does not exist")
            }
            instances = instances.filter { ids.contains($0.id) }
        }
        for (name, values) in r.filters {
            instances = instances.filter { i in
                switch name {
                case "instance-state-name": values.contains(i.state.rawValue)
                case "instance-type": values.contains(i.type)
                case "availability-zone": values.contains(i.zone)
                case "instance-lifecycle": values.contains(i.spot ? "spot" : "")
                case "tag-key": values.contains { i.tags[$0] != nil }
                default:
                    name.hasPrefix("tag:") ? values.contains(i.tags[String(name.dropFirst(4))] ?? "\u{0}") : true
                }
            }
        }
        let max = r["MaxResults"].flatMap(Int.init) ?? 1000
        let offset = try Self.offset(r["NextToken"])
        let reservations = Dictionary(grouping: instances, by: \.reservationId).values.sorted { $0[0].ordinal < $1[0].ordinal }
        let page = reservations.dropFirst(offset).prefix(max)
        let next = offset + page.count < reservations.count ? Data("\(offset + page.count)".utf8).base64EncodedString() : ""
        return [
            .set("reservationSet", await page.asyncMap { await reservation($0) }),
            .text("nextToken", next),
        ]
    }

    func reservation(_ instances: [Cloud.Instance]) async -> [XMLElement] {
        [
            .text("reservationId", instances[0].reservationId), .text("ownerId", cloud.ownerId), .node("groupSet", []),
            .set("instancesSet", await instances.asyncMap { await instance($0) }),
        ]
    }

    /// An instance as DescribeInstances and RunInstances describe it.
    func instance(_ i: Cloud.Instance) async -> [XMLElement] {
        var x = Self.instance(i, network: cloud.network)
        if let ip = await cloud.publicIp(of: i.id) { x.append(.text("ipAddress", ip)) }
        return x
    }

    static func instance(_ i: Cloud.Instance, network: SimNetwork) -> [XMLElement] {
        var x: [XMLElement] = [
            .text("instanceId", i.id), .text("imageId", i.imageId),
            .node("instanceState", [.text("code", String(i.state.code)), .text("name", i.state.rawValue)]),
            .text("privateDnsName", "ip-\(i.privateIp.replacingOccurrences(of: ".", with: "-")).ec2.internal"), .text("dnsName", ""),
            .text("amiLaunchIndex", "0"), .text("instanceType", i.type), .text("launchTime", EC2Answer.time(i.launchTime)),
            .node("placement", [.text("availabilityZone", i.zone), .text("groupName", ""), .text("tenancy", "default")]),
            .node("monitoring", [.text("state", "disabled")]), .text("privateIpAddress", i.privateIp), .text("architecture", "x86_64"),
            .text("rootDeviceType", "ebs"), .text("rootDeviceName", "/dev/xvda"), .text("virtualizationType", "hvm"), .text("hypervisor", "xen"),
        ]
        x += [
            .text("vpcId", network.vpcId), .text("subnetId", i.subnetId),
            .set(
                "groupSet", i.securityGroups.map { [.text("groupId", $0), .text("groupName", $0 == network.securityGroupId ? "spotguard-sim-workload" : $0)] }),
        ]
        if let profile = i.profileArn { x.append(.node("iamInstanceProfile", [.text("arn", profile), .text("id", network.profileId)])) }
        if i.spot { x.append(.text("instanceLifecycle", "spot")) }
        if let reason = i.stateReason {
            x += [.text("reason", reason.message), .node("stateReason", [.text("code", reason.code), .text("message", reason.message)])]
        }
        if !i.tags.isEmpty { x.append(.set("tagSet", i.tags.sorted { $0.key < $1.key }.map { [.text("key", $0.key), .text("value", $0.value)] })) }
        return x
    }

    func runInstances(_ r: EC2Request) async throws -> [XMLElement] {
        guard let image = r["ImageId"] else { throw EC2Fault.invalid("MissingParameter", "The request must contain the parameter ImageId") }
        guard let type = r["InstanceType"] else { throw EC2Fault.invalid("MissingParameter", "The request must contain the parameter InstanceType") }
        guard let minCount = Int(r["MinCount"] ?? ""), let maxCount = Int(r["MaxCount"] ?? ""), minCount >= 1, maxCount >= minCount else {
            throw EC2Fault.invalid("InvalidParameterValue", "MinCount and MaxCount must be whole numbers with 1 ≤ MinCount ≤ MaxCount")
        }
        guard maxCount <= 20 else {
            throw EC2Fault.invalid("InstanceLimitExceeded", "You have requested more instances (\(maxCount)) than your current instance limit of 20 allows")
        }
        let market = r["InstanceMarketOptions.MarketType"]
        guard market == nil || market == "spot" else { throw EC2Fault.invalid("InvalidParameterValue", "Invalid value '\(market!)' for MarketType") }
        var userData: String?
        if let raw = r["UserData"] {
            guard let data = Data(base64Encoded: raw) else { throw EC2Fault.invalid("InvalidParameterValue", "Invalid BASE64 encoding of user data.") }
            guard data.count <= 16_384 else { throw EC2Fault.invalid("InvalidParameterValue", "User data is limited to 16384 bytes") }
            userData = String(decoding: data, as: UTF8.self)
        }
        var tags: [String: String] = [:]
        for i in r.indices("TagSpecification") where r["TagSpecification.\(i).ResourceType"] == "instance" {
            tags.merge(r.tags("TagSpecification.\(i).Tag")) { _, new in new }
        }
        let launched = try await cloud.launch(
            Cloud.Launch(
                imageId: image, type: type, zone: r["Placement.AvailabilityZone"], spot: market == "spot", userData: userData, tags: tags,
                clientToken: r["ClientToken"], count: maxCount, subnetId: r["SubnetId"], securityGroupIds: r.list("SecurityGroupId"),
                profile: r["IamInstanceProfile.Arn"] ?? r["IamInstanceProfile.Name"]))
        return await reservation(launched)
    }

    func terminateInstances(_ r: EC2Request) async throws -> [XMLElement] {
        let ids = r.list("InstanceId")
        guard !ids.isEmpty else { throw EC2Fault.invalid("MissingParameter", "The request must contain the parameter InstanceId") }
        var before: [(String, Cloud.State)] = []
        for id in ids {
            guard let i = await cloud.instance(id) else { throw EC2Fault.invalid("InvalidInstanceID.NotFound", "The instance ID '\(id)' does not exist") }
            before.append((id, i.state))
        }
        for (id, state) in before where state == .pending || state == .running {
            // the machine stops in the background; the answer says shutting-down, as EC2's does
            Task { await cloud.terminate(id, reason: ("Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown")) }
        }
        return [
            .set(
                "instancesSet",
                before.map { id, state in
                    let now: Cloud.State = state == .terminated ? .terminated : .shuttingDown
                    return [
                        .text("instanceId", id), .node("currentState", [.text("code", String(now.code)), .text("name", now.rawValue)]),
                        .node("previousState", [.text("code", String(state.code)), .text("name", state.rawValue)]),
                    ]
                })
        ]
    }

    func describeImages(_ r: EC2Request) async throws -> [XMLElement] {
        let ids = r.list("ImageId")
        var images = await cloud.allImages
        for id in ids where !images.contains(where: { $0.id == id }) {
            throw EC2Fault.invalid("InvalidAMIID.NotFound", "The image id '[\(id)]' does not exist")
        }
        if !ids.isEmpty { images = images.filter { ids.contains($0.id) } }
        // Owner self: the images this account made (the base image is Amazon's)
        if r.list("Owner").contains("self") { images = images.filter { $0.sourceInstance != nil } }
        for (name, values) in r.filters where name.hasPrefix("tag:") {
            images = images.filter { $0.tags[String(name.dropFirst(4))].map(values.contains) ?? false }
        }
        let now = Date()
        return [
            .set(
                "imagesSet",
                images.map { i in
                    var x: [XMLElement] = [
                        .text("imageId", i.id), .text("imageLocation", "\(cloud.ownerId)/\(i.name)"),
                        .text("imageState", i.availableAt <= now ? "available" : "pending"), .text("imageOwnerId", cloud.ownerId),
                        .text("creationDate", EC2Answer.time(i.created)), .text("isPublic", "false"), .text("architecture", "x86_64"),
                        .text("imageType", "machine"), .text("name", i.name), .text("rootDeviceType", "ebs"), .text("rootDeviceName", "/dev/xvda"),
                        .text("virtualizationType", "hvm"), .text("hypervisor", "xen"),
                    ]
                    if let source = i.sourceInstance { x.append(.text("sourceInstanceId", source)) }
                    if !i.tags.isEmpty { x.append(.set("tagSet", i.tags.sorted { $0.key < $1.key }.map { [.text("key", $0.key), .text("value", $0.value)] })) }
                    return x
                })
        ]
    }
}
