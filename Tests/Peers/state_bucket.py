"""The customer's state bucket as AWS's own Python SDK sees it, against moto's S3.

usage: python3 state_bucket.py ENDPOINT create BUCKET
         makes the bucket; prints JSON {"bucket"}
       python3 state_bucket.py ENDPOINT list BUCKET PREFIX
         prints JSON {"objects": {key: sha256 of its content}} for every object under PREFIX
"""
import hashlib
import json
import sys

from moto_clients import clients

endpoint, command, bucket = sys.argv[1:4]
(s3,) = clients(endpoint, "s3")

if command == "create":
    s3.create_bucket(Bucket=bucket)
    print(json.dumps({"bucket": bucket}))
elif command == "list":
    prefix = sys.argv[4]
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            objects[item["Key"]] = hashlib.sha256(body).hexdigest()
    print(json.dumps({"objects": objects}))
else:
    sys.exit(f"unknown command {command}")
