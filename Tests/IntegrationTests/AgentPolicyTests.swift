import Foundation
import Testing
import ToolSupport

/// `deploy/aws/agent-policy.json` grants exactly what the agent's AWS clients can send: every
/// action named in a call of `EC2Client`, `ELBv2Client`, `Route53Client` or `S3Client` (read from the
/// sources, not listed by hand), plus what AWS checks on top of those calls, and nothing else.
@Suite struct AgentPolicyTests {
    /// IAM prefixes of the clients, by the type whose body makes the call.
    static let services = ["EC2Client": "ec2", "ELBv2Client": "elasticloadbalancing", "Route53Client": "route53", "S3Client": "s3"]
    /// Authorised by AWS alongside a call rather than called: launching with an instance
    /// profile passes its role, and RunInstances/CreateImage with tags is also a CreateTags.
    static let implied: [String: String] = ["iam:PassRole": "ec2:RunInstances", "ec2:CreateTags": "ec2:RunInstances"]

    /// Every action the Swift AWS clients send.
    static func calledActions() throws -> Set<String> {
        let root = TestStack.repoRoot
        let call = try Regex(#"(?:\bcall|\bpaginate|aws\.send|aws\.exchange|aws\.query)\(\s*"([A-Z][A-Za-z0-9]+)""#)
        let owner = try Regex(#"(?m)^(?:public )?(?:struct|extension) (\w+)"#)
        var found: Set<String> = []
        for dir in ["Shared/SpotCloud", "Services/Agent"] {
            let base = root.appendingPathComponent(dir)
            for case let file as String in FileManager.default.enumerator(atPath: base.path) ?? FileManager.DirectoryEnumerator() where file.hasSuffix(".swift")
            {
                let text = try String(contentsOf: base.appendingPathComponent(file), encoding: .utf8)
                let owners = text.matches(of: owner).map { ($0.range.lowerBound, String(text[$0.output[1].range!])) }
                for m in text.matches(of: call) {
                    let type = owners.last { $0.0 < m.range.lowerBound }?.1 ?? "?"
                    let action = String(text[m.output[1].range!])
                    let service = try #require(services[type], "\(dir)/\(file): \(action) is called in \(type), whose AWS service this test does not know")
                    found.insert("\(service):\(action)")
                }
            }
        }
        return found
    }

    static func grantedActions() throws -> Set<String> {
        let url = TestStack.repoRoot.appendingPathComponent("deploy/aws/agent-policy.json")
        let policy = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var out: Set<String> = []
        for statement in policy["Statement"] as? [[String: Any]] ?? [] {
            #expect(statement["Effect"] as? String == "Allow")
            #expect(statement["NotAction"] == nil && statement["NotResource"] == nil, "no inverted grants")
            let actions = (statement["Action"] as? [String]) ?? [(statement["Action"] as? String) ?? ""]
            for a in actions {
                #expect(!a.contains("*"), "\(a): no wildcard actions")
                out.insert(a)
            }
        }
        return out
    }

    @Test func thePolicyGrantsWhatTheCodeCallsAndNothingElse() throws {
        let called = try Self.calledActions()
        #expect(called.count >= 15, "the scan found the clients' calls: \(called.sorted())")
        #expect(called.isSuperset(of: ["ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateImage", "route53:ChangeResourceRecordSets"]))
        let needed = called.union(Self.implied.filter { called.contains($0.value) }.keys)
        let granted = try Self.grantedActions()
        #expect(needed.subtracting(granted).isEmpty, "the policy lacks \(needed.subtracting(granted).sorted())")
        #expect(granted.subtracting(needed).isEmpty, "the policy grants what nothing calls: \(granted.subtracting(needed).sorted())")
    }

    /// IAM's own grammar accepts it (moto's IAM through boto3), and refuses a broken copy.
    @Test func iamAcceptsThePolicy() async throws {
        let harness = try AgentHarness()
        let path = TestStack.repoRoot.appendingPathComponent("deploy/aws/agent-policy.json").path
        let created = try await harness.peer([path], script: "iam_policy.py")
        #expect((created["created"] as? String)?.hasPrefix("arn:aws:iam::") == true, "\(created)")
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: broken) }
        try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "StringEquals", with: "StringEqualz")
            .write(toFile: broken, atomically: true, encoding: .utf8)
        #expect(try await harness.peer([broken], script: "iam_policy.py")["error"] as? String == "MalformedPolicyDocument")
    }

    /// The role, its policy and the instance profile as one CloudFormation stack: cfn-lint
    /// passes it offline (and fails a broken copy), moto's CloudFormation creates it, and IAM
    /// then holds a role EC2 may assume, a profile with that role, and exactly the policy file.
    @Test func theCloudFormationStackMakesTheRoleAndProfile() async throws {
        let template = TestStack.repoRoot.appendingPathComponent("deploy/aws/agent-role.yaml").path
        let lint = ProcessInfo.processInfo.environment["SPOTGUARD_TEST_CFN_LINT"] ?? "cfn-lint"
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("cfn-lint-\(UUID()).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let clean = try await ChildProcess(lint, [template], output: log, errors: true).exitStatus()
        #expect(clean == 0, "cfn-lint: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("agent-role-\(UUID()).yaml").path
        defer { try? FileManager.default.removeItem(atPath: broken) }
        try String(contentsOfFile: template, encoding: .utf8).replacingOccurrences(of: "AWS::IAM::InstanceProfile", with: "AWS::IAM::InstanceProfil")
            .write(toFile: broken, atomically: true, encoding: .utf8)
        #expect(try await ChildProcess(lint, [broken], output: log).exitStatus() != 0, "cfn-lint let a broken resource type through")

        let harness = try AgentHarness()
        let made = try await harness.peer([template], script: "cfn_stack.py")
        #expect(made["status"] as? String == "CREATE_COMPLETE", "\(made)")
        let role = try #require(made["role"] as? String)
        #expect(made["profile_roles"] as? [String] == [String(role.split(separator: "/").last!)])
        let trust = try #require((made["trust"] as? [String: Any])?["Statement"] as? [[String: Any]])
        #expect(trust.count == 1 && (trust[0]["Principal"] as? [String: String])?["Service"] == "ec2.amazonaws.com")
        #expect(made["attached"] as? [String] == [made["policy_arn"] as? String ?? "-"])
        let file = try JSONSerialization.jsonObject(with: Data(contentsOf: TestStack.repoRoot.appendingPathComponent("deploy/aws/agent-policy.json")))
        #expect((made["policy"] as? NSDictionary) == (file as? NSDictionary), "the template's policy differs from deploy/aws/agent-policy.json")
    }

    /// Destructive calls only on what carries the `spotguard:agent` tag, where AWS can check it.
    @Test func destructiveActionsNeedTheSpotGuardTag() throws {
        let url = TestStack.repoRoot.appendingPathComponent("deploy/aws/agent-policy.json")
        let policy = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        for action in ["ec2:TerminateInstances", "ec2:DeregisterImage"] {
            let statements = (policy["Statement"] as? [[String: Any]] ?? []).filter {
                ($0["Action"] as? String) == action || ($0["Action"] as? [String])?.contains(action) == true
            }
            #expect(!statements.isEmpty)
            for s in statements {
                let null = (s["Condition"] as? [String: Any])?["Null"] as? [String: String]
                #expect(null?["ec2:ResourceTag/spotguard:agent"] == "false", "\(action) without the tag condition")
            }
        }
    }
}
