"""Creates Sightline's resources on a moto server: the claim table (TTL on
expires_at), the lake and quarantine buckets, the delivery stream and a
Kinesis stream. Usage: moto_resources.py ENDPOINT NAME_PREFIX"""
import sys

import boto3

endpoint, prefix = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
ddb, s3, fh, kin = (boto3.client(s, **kw) for s in ("dynamodb", "s3", "firehose", "kinesis"))

table = f"{prefix}-claims"
ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                 AttributeDefinitions=[{"AttributeName": "event_id", "AttributeType": "S"}],
                 KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}])
ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
for b in (f"{prefix}-lake", f"{prefix}-quarantine"):
    s3.create_bucket(Bucket=b)
fh.create_delivery_stream(
    DeliveryStreamName=f"{prefix}-delivery", DeliveryStreamType="DirectPut",
    ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/firehose",
                                        "BucketARN": f"arn:aws:s3:::{prefix}-lake", "Prefix": "events/"})
kin.create_stream(StreamName=f"{prefix}-events", ShardCount=2)
print(f"DEDUP_TABLE={table}")
print(f"DELIVERY_STREAM={prefix}-delivery")
print(f"QUARANTINE_BUCKET={prefix}-quarantine")
