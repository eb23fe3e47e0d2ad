"""On a moto server: a setting the reader is denied is exported as no value, and bad specs are
refused before CreateTable.

A small proxy in front of moto answers DescribeContinuousBackups (and ListTagsOfResource) with
AccessDeniedException, as IAM does for a role without the permission, and forwards everything
else. The table really has PITR and tags on; an export must not turn them off.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, List
from urllib.parse import urlparse

import boto3
import hcl2
import pytest
import yaml
from click.testing import CliRunner
from support import unique

from ddbmigrate.cli import main


def ddb(url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture()
def denying_proxy(moto_s3: str) -> Iterator[str]:
    target = urlparse(moto_s3)
    denied = ("DynamoDB_20120810.DescribeContinuousBackups", "DynamoDB_20120810.ListTagsOfResource")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_a: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("X-Amz-Target") in denied:
                out = json.dumps({"__type": "com.amazon.coral.service#AccessDeniedException",
                                  "message": "User is not authorized to perform this action"}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            try:
                conn.request("POST", self.path, body=body,
                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                conn.close()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def table_with_pitr_and_tags(url: str) -> str:
    name = unique("pitr")
    c = ddb(url)
    c.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                   Tags=[{"Key": "env", "Value": "prod"}])
    c.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return name


def tf_table(text: str) -> Any:
    tf = hcl2.loads(text, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True,
                                                                          explicit_blocks=False))
    return next(iter(next(r["aws_dynamodb_table"] for r in tf["resource"] if "aws_dynamodb_table" in r).values()))


def test_export_through_a_denied_describe_continuous_backups_leaves_pitr_alone(
        moto_s3: str, denying_proxy: str) -> None:
    name = table_with_pitr_and_tags(moto_s3)
    # Read directly, PITR and tags are exported as they are.
    r = run("schema", "export", name, "--as", "terraform", "--endpoint-url", moto_s3)
    assert r.exit_code == 0, r.stderr
    t = tf_table(r.stdout)
    assert t["point_in_time_recovery"][0]["enabled"] is True and t["tags"] == {"env": "prod"}

    r = run("schema", "export", name, "--as", "terraform", "--endpoint-url", denying_proxy)
    assert r.exit_code == 0, r.stderr
    assert "not exported: PointInTimeRecoverySpecification (access denied to DescribeContinuousBackups)" in r.stderr
    assert "not exported: Tags (access denied to ListTagsOfResource)" in r.stderr
    t = tf_table(r.stdout)
    # Before the fix: point_in_time_recovery { enabled = false }, which `terraform apply` would apply.
    assert "point_in_time_recovery" not in t and "tags" not in t
    assert [str(x).strip("${}") for x in t["lifecycle"][0]["ignore_changes"]] == ["point_in_time_recovery", "tags"]
    assert t["deletion_protection_enabled"] is False  # DescribeTable answered: read as off, written as off

    r = run("schema", "export", name, "--as", "cloudformation", "--endpoint-url", denying_proxy, "-q")
    props = next(iter(yaml.safe_load(r.stdout)["Resources"].values()))["Properties"]
    assert "PointInTimeRecoverySpecification" not in props and "Tags" not in props
    r = run("schema", "export", name, "--as", "cdk", "--endpoint-url", denying_proxy, "-q")
    assert "pointInTimeRecovery" not in r.stdout and "cdk.Tags.of" not in r.stdout
    # The table itself is untouched: the reader only reads.
    pitr = ddb(moto_s3).describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_a_table_with_pitr_read_as_off_exports_it_as_off(moto_s3: str) -> None:
    name = unique("nopitr")
    ddb(moto_s3).create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    r = run("schema", "export", name, "--as", "terraform", "--endpoint-url", moto_s3)
    assert r.exit_code == 0, r.stderr
    t = tf_table(r.stdout)
    assert t["point_in_time_recovery"][0] == {"enabled": False}
    assert "ignore_changes" not in t["lifecycle"][0]


BAD_SPECS: List[Any] = [
    ("AttributeDefinitions:\n  - {AttributeName: pk, AttributeType: S}\n  - {AttributeName: pk, AttributeType: N}\n"
     "KeySchema: [{AttributeName: pk, KeyType: HASH}]\n", "AttributeDefinitions[1].AttributeName 'pk'"),
    ("BillingMode: PAY_PER_REQUEST\nProvisionedThroughput: {ReadCapacityUnits: 5, WriteCapacityUnits: 5}\n"
     "AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\nKeySchema: [{AttributeName: pk, KeyType: HASH}]\n",
     "ProvisionedThroughput needs BillingMode PROVISIONED"),
    ("BillingMode: PAY_PER_REQUEST\nAttributeDefinitions: [{AttributeName: pk, AttributeType: S}, "
     "{AttributeName: g, AttributeType: S}]\nKeySchema: [{AttributeName: pk, KeyType: HASH}]\n"
     "GlobalSecondaryIndexes:\n  - IndexName: byG\n    KeySchema: [{AttributeName: g, KeyType: HASH}]\n"
     "    Projection: {ProjectionType: ALL}\n"
     "    ProvisionedThroughput: {ReadCapacityUnits: 1, WriteCapacityUnits: 1}\n",
     "GlobalSecondaryIndexes[0].ProvisionedThroughput needs BillingMode PROVISIONED"),
    ("BillingMode: PROVISIONED\nAttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n"
     "KeySchema: [{AttributeName: pk, KeyType: HASH}]\n", "ProvisionedThroughput is required"),
    ("AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\nKeySchema: [{AttributeName: pk, KeyType: HASH}]\n"
     "Tags: [{Key: a}]\n", "Tags[0].Value is required"),
]


@pytest.mark.parametrize("text,words", BAD_SPECS, ids=["attr-twice", "ppr-capacity", "ppr-gsi-capacity",
                                                       "provisioned-no-capacity", "tag-no-value"])
def test_create_table_refuses_bad_specs_before_create_table(moto_s3: str, tmp_path: Path, text: str,
                                                            words: str) -> None:
    name = unique("bad")
    path = tmp_path / "bad.yaml"
    path.write_text(f"TableName: {name}\n" + text)
    r = run("create-table", "--spec", str(path), "--endpoint-url", moto_s3, "--region", "us-east-1")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    err = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and f"table spec {path}: " in err[0] and words in err[0], r.stderr
    c = ddb(moto_s3)
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.describe_table(TableName=name)


def test_an_empty_tag_value_is_a_value(moto_s3: str, tmp_path: Path) -> None:
    name = unique("emptytag")
    path = tmp_path / "ok.yaml"
    path.write_text(f"TableName: {name}\nAttributeDefinitions: [{{AttributeName: pk, AttributeType: S}}]\n"
                    "KeySchema: [{AttributeName: pk, KeyType: HASH}]\nTags: [{Key: a, Value: ''}]\n")
    r = run("create-table", "--spec", str(path), "--endpoint-url", moto_s3, "--region", "us-east-1")
    assert r.exit_code == 0, r.stdout + r.stderr
    c = ddb(moto_s3)
    arn = c.describe_table(TableName=name)["Table"]["TableArn"]
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "a", "Value": ""}]


MIRROR = os.environ.get("DDBMIGRATE_TF_PLUGIN_MIRROR", "/opt/tf-plugins")
HAVE_TERRAFORM = shutil.which("terraform") is not None \
    and os.path.isdir(f"{MIRROR}/registry.terraform.io/hashicorp/aws")


@pytest.mark.skipif(not HAVE_TERRAFORM, reason="needs terraform and a local mirror of the hashicorp/aws provider")
def test_terraform_plan_of_the_denied_export_changes_nothing(moto_s3: str, denying_proxy: str,
                                                             tmp_path: Path) -> None:
    """The export adopted by Terraform itself (the provider reading the table on moto): no change.

    Leaving an unread setting out is not enough on its own: the provider plans tags it is not
    given back to none, hence ignore_changes."""
    name = table_with_pitr_and_tags(moto_s3)
    ddb(moto_s3).update_table(TableName=name, DeletionProtectionEnabled=True)
    work = tmp_path / "tf"
    work.mkdir()
    r = run("schema", "export", name, "--as", "terraform", "-o", str(work / "main.tf"),
            "--endpoint-url", denying_proxy, "-q")
    assert r.exit_code == 0, r.stderr
    (work / "provider.tf").write_text(f'''provider "aws" {{
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  endpoints {{
    dynamodb = "{moto_s3}"
  }}
}}
''')
    (tmp_path / "terraformrc").write_text(f'''provider_installation {{
  filesystem_mirror {{
    path    = "{MIRROR}"
    include = ["registry.terraform.io/hashicorp/aws"]
  }}
  direct {{
    exclude = ["registry.terraform.io/hashicorp/aws"]
  }}
}}
''')
    env = dict(os.environ, TF_CLI_CONFIG_FILE=str(tmp_path / "terraformrc"), TF_IN_AUTOMATION="1",
               CHECKPOINT_DISABLE="1")
    for cmd in (["init", "-input=false", "-no-color"], ["plan", "-input=false", "-no-color", "-lock=false"]):
        p = subprocess.run(["terraform", *cmd], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
    assert "Plan: 1 to import, 0 to add, 0 to change, 0 to destroy." in p.stdout, p.stdout
