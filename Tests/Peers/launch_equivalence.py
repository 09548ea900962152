"""A source instance as a real fleet has one, and the check that a launched copy is equivalent,
both through AWS's own Python SDK against moto (EC2 and IAM in one moto_server).

usage: python3 launch_equivalence.py ENDPOINT setup [template]
         a VPC with subnets in us-east-1a and us-east-1b, two security groups, an instance
         profile, and a source instance in us-east-1a with them, a key, two encrypted volumes
         (gp3 and gp2), IMDSv2 required with hop limit 2, detailed monitoring and user tags
         (moto keeps a volume's size, type and encryption but not the iops and throughput asked
         for at launch: those are checked on the request, in Swift); with `template`, the
         groups, key, profile, volumes and tags are a launch template's and the source is
         launched from it (moto applies a template's groups, key, volumes and tags but not its
         profile, metadata options or monitoring: the source is given those at launch, as an
         override); prints JSON {"source": ..., "subnets": {az: id}, "profile_arn": ...,
         "groups": [...], "vpc": ..., "template": id or null}
       python3 launch_equivalence.py ENDPOINT userdata INSTANCE
         prints JSON {"user_data": ...}: what the instance was launched with, decoded
       python3 launch_equivalence.py ENDPOINT images AGENT SOURCE
         prints JSON {"images": [...], "snapshots": [...]}: the images tagged spotguard:agent=AGENT
         and the snapshots CreateImage made of SOURCE that still exist
       python3 launch_equivalence.py ENDPOINT describe INSTANCE
         prints JSON {"described": ...}: the settings `check` compares, as they are now (a
         terminated instance loses its profile and volumes: describe a source before it goes)
       python3 launch_equivalence.py ENDPOINT check SOURCE COPY AZ
         compares COPY with SOURCE (an instance id, or what `describe` printed for it); prints
         JSON {"differences": [...], ...} and exits 1 when any setting differs (the subnet must
         be the VPC's subnet in AZ)
"""
import json
import sys
import uuid

from moto_clients import clients

endpoint, command = sys.argv[1:3]
ec2, iam = clients(endpoint, "ec2", "iam")


def setup(template=False):
    run = uuid.uuid4().hex[:8]
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = {
        az: ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
        for az, cidr in (("us-east-1a", "10.42.1.0/24"), ("us-east-1b", "10.42.2.0/24"))
    }
    groups = [
        ec2.create_security_group(GroupName=f"sg-{name}-{run}", Description=name, VpcId=vpc)["GroupId"] for name in ("web", "ssh")
    ]
    iam.create_role(RoleName=f"workload-{run}", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    profile = iam.create_instance_profile(InstanceProfileName=f"workload-{run}")["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName=f"workload-{run}", RoleName=f"workload-{run}")
    ec2.create_key_pair(KeyName=f"ops-{run}")
    volumes = [
        {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 40, "VolumeType": "gp3", "Iops": 4000, "Throughput": 250,
                                            "Encrypted": True, "DeleteOnTermination": True}},
        {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 100, "VolumeType": "gp2", "Encrypted": True, "DeleteOnTermination": False}},
    ]
    tags = [{"ResourceType": "instance", "Tags": [
        {"Key": "Name", "Value": f"web-{run}"}, {"Key": "team", "Value": "payments"}, {"Key": "cost-center", "Value": "42"}]}]
    settings = dict(
        SecurityGroupIds=groups, KeyName=f"ops-{run}", IamInstanceProfile={"Arn": profile["Arn"]}, BlockDeviceMappings=volumes,
        MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
        Monitoring={"Enabled": True}, TagSpecifications=tags,
    )
    template_id = None
    if template:
        template_id = ec2.create_launch_template(
            LaunchTemplateName=f"web-{run}", LaunchTemplateData=dict(ImageId="ami-12c6146b", InstanceType="m5.large", **settings),
        )["LaunchTemplate"]["LaunchTemplateId"]
        launch = dict(LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"},
                      IamInstanceProfile=settings["IamInstanceProfile"], MetadataOptions=settings["MetadataOptions"],
                      Monitoring=settings["Monitoring"])
    else:
        launch = dict(ImageId="ami-12c6146b", InstanceType="m5.large", **settings)
    source = ec2.run_instances(
        MinCount=1, MaxCount=1, SubnetId=subnets["us-east-1a"], InstanceMarketOptions={"MarketType": "spot"}, **launch,
    )["Instances"][0]["InstanceId"]
    print(json.dumps({"source": source, "subnets": subnets, "profile_arn": profile["Arn"], "groups": groups, "vpc": vpc,
                      "template": template_id}))


def describe(instance):
    i = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    volumes = {}
    for m in i.get("BlockDeviceMappings", []):
        v = ec2.describe_volumes(VolumeIds=[m["Ebs"]["VolumeId"]])["Volumes"][0]
        volumes[m["DeviceName"]] = {
            "size": v["Size"], "type": v["VolumeType"], "iops": v.get("Iops"), "throughput": v.get("Throughput"),
            "encrypted": v["Encrypted"], "kms": v.get("KmsKeyId"),
        }
    return {
        "vpc": i.get("VpcId"),
        "subnet": i.get("SubnetId"),
        "az": i["Placement"]["AvailabilityZone"],
        "groups": sorted(g["GroupId"] for g in i.get("SecurityGroups", [])),
        "profile": i.get("IamInstanceProfile", {}).get("Arn"),
        "key": i.get("KeyName"),
        "volumes": volumes,
        "metadata": {k: i.get("MetadataOptions", {}).get(k) for k in ("HttpTokens", "HttpPutResponseHopLimit", "HttpEndpoint")},
        "monitoring": i.get("Monitoring", {}).get("State"),
        "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
    }


def check(source, copy, az):
    a = json.loads(source) if source.startswith("{") else describe(source)
    b = describe(copy)
    differences = []
    for key in ("vpc", "groups", "profile", "key", "metadata", "monitoring"):
        if a[key] != b[key]:
            differences.append({"setting": key, "source": a[key], "copy": b[key]})
    if b["az"] != az:
        differences.append({"setting": "az", "expected": az, "copy": b["az"]})
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [a["vpc"]]}, {"Name": "availability-zone", "Values": [az]}])
    if b["subnet"] not in [s["SubnetId"] for s in subnets["Subnets"]]:
        differences.append({"setting": "subnet", "expected_in": az, "copy": b["subnet"]})
    if sorted(a["volumes"]) != sorted(b["volumes"]):
        differences.append({"setting": "devices", "source": sorted(a["volumes"]), "copy": sorted(b["volumes"])})
    for device, spec in a["volumes"].items():
        if b["volumes"].get(device) != spec:
            differences.append({"setting": f"volume {device}", "source": spec, "copy": b["volumes"].get(device)})
    for key, value in a["tags"].items():
        if not key.startswith("spotguard:") and b["tags"].get(key) != value:
            differences.append({"setting": f"tag {key}", "source": value, "copy": b["tags"].get(key)})
    print(json.dumps({"differences": differences, "source": a, "copy": b}, default=str))
    sys.exit(1 if differences else 0)


def userdata(instance):
    import base64
    value = ec2.describe_instance_attribute(InstanceId=instance, Attribute="userData").get("UserData", {}).get("Value", "")
    print(json.dumps({"user_data": base64.b64decode(value).decode() if value else ""}))


def images(agent, source):
    """The agent's images, and the snapshots CreateImage made of SOURCE (AWS and moto describe
    them as "Created by CreateImage(i-…) for ami-…"), as the account sees them."""
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:spotguard:agent", "Values": [agent]}])["Images"]
    snapshots = [
        s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        if f"CreateImage({source})" in s.get("Description", "")
    ]
    print(json.dumps({"images": [i["ImageId"] for i in found], "snapshots": snapshots}))


if command == "setup":
    setup(sys.argv[3:4] == ["template"])
elif command == "userdata":
    userdata(sys.argv[3])
elif command == "images":
    images(*sys.argv[3:5])
elif command == "describe":
    print(json.dumps({"described": describe(sys.argv[3])}, default=str))
elif command == "check":
    check(*sys.argv[3:6])
else:
    sys.exit(f"unknown command {command}")
