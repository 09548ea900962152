"""IAM's own check of a policy document, through AWS's Python SDK against moto's IAM (which
parses the grammar as AWS does: versions, effects, actions, resources, condition operators).

usage: python3 iam_policy.py ENDPOINT POLICY_FILE
         prints JSON {"created": ARN} or {"error": CODE, "message": ...}
"""
import json
import sys
import uuid

from botocore.exceptions import ClientError

from moto_clients import clients

endpoint, path = sys.argv[1:3]
(iam,) = clients(endpoint, "iam")
try:
    with open(path, encoding="utf-8") as f:
        answer = iam.create_policy(PolicyName="spotguard-agent-" + uuid.uuid4().hex[:8], PolicyDocument=f.read())
    print(json.dumps({"created": answer["Policy"]["Arn"]}))
except ClientError as e:
    print(json.dumps({"error": e.response["Error"]["Code"], "message": e.response["Error"]["Message"]}))
