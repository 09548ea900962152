import Foundation
import SpotCloud
import Testing

/// The copy's RunInstances request from the source's DescribeInstances item, including what
/// moto does not keep (a volume's IOPS, throughput and KMS key) and the launch-template path.
@Suite struct LaunchEquivalenceTests {
    static func source(tags: String = "") throws -> EC2Instance {
        let xml = """
            <item><instanceId>i-0aaaaaaaaaaaaaaa1</instanceId><instanceType>m5.large</instanceType>
            <placement><availabilityZone>us-east-1a</availabilityZone><tenancy>dedicated</tenancy></placement>
            <instanceState><name>running</name></instanceState><vpcId>vpc-1</vpcId><subnetId>subnet-a</subnetId>
            <groupSet><item><groupId>sg-web</groupId></item><item><groupId>sg-ssh</groupId></item></groupSet>
            <iamInstanceProfile><arn>arn:aws:iam::1:instance-profile/workload</arn></iamInstanceProfile><keyName>ops</keyName>
            <rootDeviceName>/dev/xvda</rootDeviceName>
            <blockDeviceMapping>
              <item><deviceName>/dev/xvda</deviceName><ebs><volumeId>vol-root</volumeId><deleteOnTermination>true</deleteOnTermination></ebs></item>
              <item><deviceName>/dev/sdf</deviceName><ebs><volumeId>vol-data</volumeId><deleteOnTermination>false</deleteOnTermination></ebs></item>
            </blockDeviceMapping>
            <metadataOptions><httpTokens>required</httpTokens><httpPutResponseHopLimit>2</httpPutResponseHopLimit><httpEndpoint>enabled</httpEndpoint></metadataOptions>
            <monitoring><state>enabled</state></monitoring><ebsOptimized>true</ebsOptimized>
            <tagSet><item><key>team</key><value>payments</value></item><item><key>spotguard:agent</key><value>old</value></item>\(tags)</tagSet></item>
            """
        return EC2Instance(try XMLNode.parse(Data(xml.utf8)))
    }

    static let volumes = [
        EC2Volume(id: "vol-root", VolumeSettings(sizeGiB: 40, volumeType: "gp3", iops: 4000, throughput: 250, encrypted: true, kmsKeyId: "arn:aws:kms:key/1")),
        EC2Volume(
            id: "vol-data", VolumeSettings(sizeGiB: 500, volumeType: "io2", iops: 8000, throughput: 125, encrypted: false, kmsKeyId: "arn:aws:kms:key/2")),
    ]
    static let target = LaunchEquivalence.Target(
        imageId: "ami-switch", instanceType: "c5.large", market: .onDemand, availabilityZone: "us-east-1b", userData: "#!/bin/sh\n",
        tags: ["spotguard:agent": "agent-1"], clientToken: "switch-1")

    static func parameters(_ r: RunInstancesRequest) -> [String: String] {
        Dictionary(EC2Client.parameters(r), uniquingKeysWith: { a, _ in a })
    }

    @Test func everySettingOfTheSourceIsRequested() throws {
        let p = Self.parameters(LaunchEquivalence.request(copying: try Self.source(), volumes: Self.volumes, subnetId: "subnet-b", target: Self.target))
        #expect(p["SubnetId"] == "subnet-b" && p["Placement.AvailabilityZone"] == nil, "the subnet names the zone")
        #expect(p["SecurityGroupId.1"] == "sg-web" && p["SecurityGroupId.2"] == "sg-ssh")
        #expect(p["IamInstanceProfile.Arn"] == "arn:aws:iam::1:instance-profile/workload" && p["KeyName"] == "ops")
        #expect(p["BlockDeviceMapping.1.DeviceName"] == "/dev/xvda" && p["BlockDeviceMapping.1.Ebs.VolumeSize"] == "40")
        #expect(p["BlockDeviceMapping.1.Ebs.VolumeType"] == "gp3" && p["BlockDeviceMapping.1.Ebs.Iops"] == "4000")
        #expect(p["BlockDeviceMapping.1.Ebs.Throughput"] == "250" && p["BlockDeviceMapping.1.Ebs.Encrypted"] == "true")
        #expect(p["BlockDeviceMapping.1.Ebs.KmsKeyId"] == "arn:aws:kms:key/1" && p["BlockDeviceMapping.1.Ebs.DeleteOnTermination"] == "true")
        #expect(p["BlockDeviceMapping.2.Ebs.VolumeType"] == "io2" && p["BlockDeviceMapping.2.Ebs.Iops"] == "8000")
        #expect(
            p["BlockDeviceMapping.2.Ebs.Throughput"] == nil && p["BlockDeviceMapping.2.Ebs.KmsKeyId"] == nil,
            "no throughput off gp3, no key on an unencrypted volume")
        #expect(p["BlockDeviceMapping.2.Ebs.DeleteOnTermination"] == "false")
        #expect(p["MetadataOptions.HttpTokens"] == "required" && p["MetadataOptions.HttpPutResponseHopLimit"] == "2")
        #expect(p["Placement.Tenancy"] == "dedicated" && p["Monitoring.Enabled"] == "true" && p["EbsOptimized"] == "true")
        #expect(p["ImageId"] == "ami-switch" && p["InstanceType"] == "c5.large" && p["InstanceMarketOptions.MarketType"] == nil)
        let tags = EC2Client.parameters(LaunchEquivalence.request(copying: try Self.source(), volumes: Self.volumes, subnetId: nil, target: Self.target))
            .filter { $0.0.hasPrefix("TagSpecification.1.Tag.") }.map(\.1)
        #expect(tags == ["spotguard:agent", "agent-1", "team", "payments"], "user tags kept, the source's spotguard tags replaced")
    }

    @Test func aTemplatedSourceIsCopiedFromItsTemplate() throws {
        let source = try Self.source(
            tags: "<item><key>aws:ec2launchtemplate:id</key><value>lt-0abc</value></item>"
                + "<item><key>aws:ec2launchtemplate:version</key><value>7</value></item>")
        let r = LaunchEquivalence.request(copying: source, volumes: Self.volumes, subnetId: "subnet-b", target: Self.target)
        let p = Self.parameters(r)
        #expect(p["LaunchTemplate.LaunchTemplateId"] == "lt-0abc" && p["LaunchTemplate.Version"] == "7")
        #expect(p["SubnetId"] == "subnet-b" && p["InstanceType"] == "c5.large")
        #expect(p["BlockDeviceMapping.1.DeviceName"] == nil && p["KeyName"] == nil && p["Placement.Tenancy"] == nil, "the template's own")
        // what the source runs with, which its launch may have set over the template's
        #expect(p["SecurityGroupId.1"] == "sg-web" && p["SecurityGroupId.2"] == "sg-ssh")
        #expect(p["IamInstanceProfile.Arn"] == "arn:aws:iam::1:instance-profile/workload" && p["MetadataOptions.HttpTokens"] == "required")
        #expect(p["Monitoring.Enabled"] == "true")
        #expect(!r.tags.keys.contains { $0.hasPrefix("aws:") }, "aws: tags are AWS's to set")
    }

    @Test func theSubnetIsTheSourcesOwnOrTheFreestOfTheZone() throws {
        let source = try Self.source()
        let subnets = [
            EC2Subnet(id: "subnet-b1", vpcId: "vpc-1", availabilityZone: "us-east-1b", availableAddresses: 20),
            EC2Subnet(id: "subnet-b2", vpcId: "vpc-1", availabilityZone: "us-east-1b", availableAddresses: 200),
        ]
        #expect(LaunchEquivalence.subnet(for: source, in: "us-east-1a", candidates: subnets) == "subnet-a")
        #expect(LaunchEquivalence.subnet(for: source, in: "us-east-1b", candidates: subnets) == "subnet-b2")
        #expect(LaunchEquivalence.subnet(for: source, in: "us-east-1c", candidates: subnets) == nil)
    }

    /// The user data runs the agent under systemd and carries settings with quotes intact.
    @Test func userDataCarriesTheAgentsSettings() {
        let script = UserData.script([("SPOTGUARD_AGENT_SERVER", "http://127.0.0.1:1"), ("SPOTGUARD_AGENT_TOKEN", "it's \"quoted\" \\ value")])
        #expect(script.hasPrefix("#!/bin/sh\n") && script.contains("Restart=always") && script.hasSuffix("systemctl restart spotguard-agent.service\n"))
        #expect(UserData.settings(UserData.script([("A", "$HOME `x`")])) == ["A": "$HOME `x`"])
        #expect(!script.contains("exec spotguard-agent"), "never an unsupervised process")
        #expect(UserData.settings(script) == ["SPOTGUARD_AGENT_SERVER": "http://127.0.0.1:1", "SPOTGUARD_AGENT_TOKEN": "it's \"quoted\" \\ value"])
    }
}
