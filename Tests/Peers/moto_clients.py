"""boto3 clients for moto's server: the peers' one way to reach it (fixed test keys, no retries,
so a refusal shows at once)."""
import boto3
from botocore.config import Config


def clients(endpoint, *services):
    session = dict(
        region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )
    return [boto3.client(service, **session) for service in services]
