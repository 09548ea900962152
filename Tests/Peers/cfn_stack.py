"""Deploys a CloudFormation template to moto's CloudFormation and reports, through IAM, what
it made: the role's trust, the instance profile's roles and the managed policy's document.

usage: python3 cfn_stack.py ENDPOINT TEMPLATE_FILE
         prints JSON {"status", "outputs", "role", "trust", "profile_roles", "policy"} or {"error", "message"}
"""
import json
import sys
import uuid

from botocore.exceptions import ClientError

from moto_clients import clients

endpoint, path = sys.argv[1:3]
cfn, iam = clients(endpoint, "cloudformation", "iam")
try:
    name = "spotguard-agent-" + uuid.uuid4().hex[:8]
    with open(path, encoding="utf-8") as f:
        cfn.create_stack(StackName=name, TemplateBody=f.read(), Parameters=[{"ParameterKey": "RoleName", "ParameterValue": name}],
                         Capabilities=["CAPABILITY_NAMED_IAM"])
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    role = iam.get_role(RoleName=name)["Role"]
    profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    policy_arn = outputs["PolicyArn"]
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"]
    if isinstance(document, str):
        document = json.loads(document)
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]
    print(json.dumps({
        "status": stack["StackStatus"], "outputs": outputs, "role": role["Arn"], "trust": role["AssumeRolePolicyDocument"],
        "profile_roles": [r["RoleName"] for r in profile["Roles"]], "attached": attached, "policy_arn": policy_arn, "policy": document,
    }, default=str))
except ClientError as e:
    print(json.dumps({"error": e.response["Error"]["Code"], "message": e.response["Error"]["Message"]}))
