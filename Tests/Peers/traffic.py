"""A workload's entry points as a real fleet has them, and the check of where they point, both
through AWS's own Python SDK against moto (EC2, ELBv2 and Route 53 in one moto_server).

usage: python3 traffic.py ENDPOINT setup PRIMARY
         an Elastic IP associated with PRIMARY, a target group (port 8080, deregistration delay
         0 s) with PRIMARY registered, a hosted zone with an A record naming PRIMARY's private
         address; prints JSON {"allocation_id", "target_group_arn", "zone_id", "zone_name",
         "record_name"}
       python3 traffic.py ENDPOINT check ALLOCATION TARGET_GROUP ZONE RECORD
         prints JSON {"eip_instance", "targets": [...], "record_values": [...],
         "private_ips": {instance: ip}}: where each entry point sends traffic now
"""
import json
import sys
import uuid

from moto_clients import clients

endpoint, command = sys.argv[1:3]
ec2, elb, route53 = clients(endpoint, "ec2", "elbv2", "route53")


def private_ip(instance):
    reservations = ec2.describe_instances(InstanceIds=[instance])["Reservations"]
    return reservations[0]["Instances"][0].get("PrivateIpAddress")


def setup(primary):
    run = uuid.uuid4().hex[:8]
    vpc = ec2.describe_instances(InstanceIds=[primary])["Reservations"][0]["Instances"][0]["VpcId"]
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=allocation, InstanceId=primary)
    group = elb.create_target_group(Name=f"web-{run}", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="instance")
    arn = group["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "0"}])
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": primary, "Port": 8080}])
    zone_name = f"w{run}.example.com"
    zone = route53.create_hosted_zone(Name=zone_name, CallerReference=run)["HostedZone"]["Id"].split("/")[-1]
    record = f"app.{zone_name}"
    route53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
            "Name": record, "Type": "A", "TTL": 30, "ResourceRecords": [{"Value": private_ip(primary)}]}}]},
    )
    return {"allocation_id": allocation, "target_group_arn": arn, "zone_id": zone, "zone_name": zone_name, "record_name": record}


def check(allocation, group, zone, record):
    address = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]
    targets = [
        {"id": d["Target"]["Id"], "port": d["Target"].get("Port"), "state": d["TargetHealth"]["State"]}
        for d in elb.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
    ]
    values = [
        r["Value"]
        for s in route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        if s["Name"].rstrip(".") == record and s["Type"] == "A"
        for r in s.get("ResourceRecords", [])
    ]
    instances = {t["id"] for t in targets} | ({address["InstanceId"]} if address.get("InstanceId") else set())
    return {"eip_instance": address.get("InstanceId"), "targets": targets, "record_values": values,
            "private_ips": {i: private_ip(i) for i in instances}}


if command == "setup":
    print(json.dumps(setup(sys.argv[3])))
elif command == "check":
    print(json.dumps(check(*sys.argv[3:7])))
else:
    sys.exit(f"unknown command {command}")
