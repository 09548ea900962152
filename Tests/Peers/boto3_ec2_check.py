"""The simulator's EC2 endpoint seen by AWS's own Python SDK (botocore parses every answer
against EC2's service model): the calls the agent makes, plus errors. Prints one JSON object;
exits non-zero on the first surprise.

usage: python3 boto3_ec2_check.py ENDPOINT ACCESS_KEY SECRET
"""
import base64
import datetime
import json
import sys
import time

import boto3
import botocore.exceptions
from botocore.config import Config

endpoint, key, secret = sys.argv[1:4]
ec2 = boto3.client(
    "ec2", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
    config=Config(retries={"max_attempts": 1}),
)
out = {}

zones = ec2.describe_availability_zones()["AvailabilityZones"]
out["zones"] = sorted(z["ZoneName"] for z in zones)

now = datetime.datetime.now(datetime.timezone.utc)
prices = ec2.describe_spot_price_history(
    InstanceTypes=["m5.large"], ProductDescriptions=["Linux/UNIX"], StartTime=now - datetime.timedelta(seconds=30)
)["SpotPriceHistory"]
out["price_zones"] = sorted({p["AvailabilityZone"] for p in prices})
out["prices_positive"] = all(float(p["SpotPrice"]) > 0 for p in prices)
out["price_timestamps_are_dates"] = all(isinstance(p["Timestamp"], datetime.datetime) for p in prices)

# a paginator follows nextToken
pages = ec2.get_paginator("describe_spot_price_history").paginate(
    InstanceTypes=["m5.large", "c5.large"], StartTime=now - datetime.timedelta(seconds=120), PaginationConfig={"PageSize": 5}
)
out["paged_prices"] = sum(len(page["SpotPriceHistory"]) for page in pages)

# no default VPC: a launch names a subnet of the account's VPC (none in the last zone)
subnets = ec2.describe_subnets()["Subnets"]
out["subnet_zones"] = sorted(s["AvailabilityZone"] for s in subnets)
subnet_b = next(s["SubnetId"] for s in subnets if s["AvailabilityZone"] == "us-east-1b")
launched = ec2.run_instances(
    ImageId="ami-0a5c3558529277641", InstanceType="m5.large", MinCount=1, MaxCount=1,
    SubnetId=subnet_b, IamInstanceProfile={"Name": "spotguard-sim-workload"},
    InstanceMarketOptions={"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}},
    UserData="#cloud-config\n", ClientToken="boto3-check-1",
    TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "checked-by", "Value": "boto3"}]}],
)["Instances"][0]
instance = launched["InstanceId"]
out["launched_state"] = launched["State"]["Name"]
again = ec2.run_instances(ImageId="ami-0a5c3558529277641", InstanceType="m5.large", MinCount=1, MaxCount=1, ClientToken="boto3-check-1")
out["client_token_idempotent"] = again["Instances"][0]["InstanceId"] == instance

ec2.get_waiter("instance_running").wait(InstanceIds=[instance], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
described = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
out["described"] = {
    "state": described["State"]["Name"], "zone": described["Placement"]["AvailabilityZone"],
    "lifecycle": described.get("InstanceLifecycle"), "tags": {t["Key"]: t["Value"] for t in described.get("Tags", [])},
    "vpc": described.get("VpcId"), "subnet": described.get("SubnetId"), "groups": len(described.get("SecurityGroups", [])),
    "profile": described.get("IamInstanceProfile", {}).get("Arn"),
}
out["subnet_vpc"] = described.get("VpcId") == next(s["VpcId"] for s in subnets) and described.get("SubnetId") == subnet_b

# an Elastic IP follows the instance it is associated with
allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
ec2.associate_address(AllocationId=allocation, InstanceId=instance, AllowReassociation=True)
address = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]
out["address_instance"] = address.get("InstanceId") == instance
out["address_public_ip"] = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0].get("PublicIpAddress") == address["PublicIp"]

ec2.create_tags(Resources=[instance], Tags=[{"Key": "second", "Value": "tag"}])
tagged = ec2.describe_instances(Filters=[{"Name": "tag:second", "Values": ["tag"]}])["Reservations"]
out["tag_filter"] = [i["InstanceId"] for r in tagged for i in r["Instances"]] == [instance]

image = ec2.create_image(InstanceId=instance, Name="boto3-check-image", NoReboot=True)["ImageId"]
ec2.get_waiter("image_available").wait(ImageIds=[image], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
out["image_state"] = ec2.describe_images(ImageIds=[image])["Images"][0]["State"]

terminated = ec2.terminate_instances(InstanceIds=[instance])["TerminatingInstances"][0]
out["terminating"] = [terminated["PreviousState"]["Name"], terminated["CurrentState"]["Name"]]
ec2.get_waiter("instance_terminated").wait(InstanceIds=[instance], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
out["terminated"] = True

def error_of(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
    return None

out["unknown_instance"] = error_of(lambda: ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"]))
out["no_subnet"] = error_of(lambda: ec2.run_instances(ImageId="ami-0a5c3558529277641", InstanceType="m5.large", MinCount=1, MaxCount=1))
out["subnet_elsewhere"] = error_of(lambda: ec2.run_instances(
    ImageId="ami-0a5c3558529277641", InstanceType="m5.large", MinCount=1, MaxCount=1, SubnetId=subnet_b,
    Placement={"AvailabilityZone": "us-east-1c"}))
out["unknown_profile"] = error_of(lambda: ec2.run_instances(
    ImageId="ami-0a5c3558529277641", InstanceType="m5.large", MinCount=1, MaxCount=1, SubnetId=subnet_b,
    IamInstanceProfile={"Name": "someone-elses"}))
out["bad_type"] = error_of(lambda: ec2.run_instances(ImageId="ami-0a5c3558529277641", InstanceType="x9.nano", MinCount=1, MaxCount=1))
out["unknown_image"] = error_of(lambda: ec2.describe_images(ImageIds=["ami-00000000000000000"]))
wrong = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key="wrong",
                     config=Config(retries={"max_attempts": 1}))
out["wrong_secret"] = error_of(lambda: wrong.describe_availability_zones())
stranger = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="AKIDUNKNOWN", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}))
out["unknown_key"] = error_of(lambda: stranger.describe_availability_zones())
print(json.dumps(out, sort_keys=True))
