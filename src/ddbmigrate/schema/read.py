"""Reading a table's whole definition: DescribeTable plus the six calls that report the rest.

Invariant: a setting is never guessed. When the call that reports it fails (the endpoint does not
implement it, as DynamoDB Local does not implement PITR or tags; access is denied), the setting is
recorded in ``TableDefinition.unread`` with the reason, so a clone says it did not copy it and a
diff says it did not compare it. Only DescribeTable itself is required.

The extra calls go through their own botocore client with one attempt each; throttling is retried
here, explicitly and a bounded number of times (an endpoint that answers 500 to an operation it
does not implement must not cost a minute of botocore back-off per setting).
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from botocore.config import Config

from ..aws.client import DynamoClient
from ..aws.control_plane import AnswerRefused, is_unreachable
from ..aws.errors import RETRIABLE_CODES, THROTTLE_CODES
from ..aws.errors import error_code, error_message
from ..config import TableRef
from .model import TableDefinition, from_aws

ATTEMPTS = 4


def settings_client(client: DynamoClient) -> Any:
    """A botocore DynamoDB client for the settings calls: one attempt per call, short timeouts."""
    cfg = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
    return client.bound(client.session.client("dynamodb", region_name=client.region,
                                              endpoint_url=client.ref.endpoint_url, config=cfg))


def service_client(client: DynamoClient, service: str, *, region: Optional[str] = None,
                   config: Optional[Config] = None) -> Any:
    """A botocore client of another AWS service (``kms``, ``sts``) with ``client``'s credentials, at
    that service's own endpoint.

    ``--endpoint-url`` (``TableRef.endpoint_url``) is DynamoDB's: a KMS or STS call sent there goes
    to DynamoDB Local, a proxy or a VPC endpoint that answers no such call. The service's endpoint
    comes from the AWS chain instead (``AWS_ENDPOINT_URL_KMS``, ``AWS_ENDPOINT_URL_STS``,
    ``AWS_ENDPOINT_URL``, the profile's ``services`` section), else AWS's public one.
    """
    return client.session.client(service, region_name=region or client.region, config=config)


def why(e: Exception, op: str) -> str:
    """One phrase saying why ``op`` failed, for 'not read' / 'not applied' lines."""
    code = error_code(e)
    msg = (error_message(e) or str(e)).splitlines()[0][:160]
    if code in ("UnknownOperationException",) or "not currently supported" in msg \
            or "unknown operation" in msg.lower():
        return f"the endpoint does not support {op}"
    if code and code.isdigit():
        return f"the endpoint failed {op} (HTTP {code})"
    if code in ("AccessDeniedException", "UnauthorizedOperation"):
        return f"access denied to {op}"
    return f"{op} failed: {code + ': ' if code else ''}{msg}"


def call(fn: Callable[..., Any], op: str, *, sleep: Callable[[float], None] = time.sleep,
         retry_codes: Tuple[str, ...] = (), attempts: int = ATTEMPTS, **kw: Any) -> Any:
    """``fn(**kw)``, retrying throttling, DynamoDB's 500/503, dropped connections (and ``retry_codes``)
    with capped, jittered back-off; ``attempts`` in all."""
    for attempt in range(attempts):
        try:
            return fn(**kw)
        except Exception as e:
            code = error_code(e)
            transient = code in THROTTLE_CODES or code in RETRIABLE_CODES or code in retry_codes \
                or is_unreachable(e) or isinstance(e, AnswerRefused)  # no AWS error code: worth another attempt
            if attempt + 1 < attempts and transient:
                sleep(min(8.0, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2))
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


AWS_MANAGED_ALIAS = "alias/aws/dynamodb"


def is_aws_managed_key(client: DynamoClient, key_arn: str) -> bool:
    """Whether ``key_arn`` is DynamoDB's AWS managed key (its alias is ``alias/aws/dynamodb``).

    Best effort (kms:ListAliases on the key's account): when KMS cannot tell, the key stays named
    by its ARN, which is still correct, only not portable to another account.
    """
    parts = key_arn.split(":")
    region = parts[3] if len(parts) > 5 and parts[3] else client.region
    try:
        kms = service_client(client, "kms", region=region,
                             config=Config(retries={"total_max_attempts": 2}, connect_timeout=3, read_timeout=10))
        aliases = kms.list_aliases(KeyId=key_arn).get("Aliases") or []
    except Exception:
        return False
    return any(a.get("AliasName") == AWS_MANAGED_ALIAS for a in aliases)


def read_definition(client: DynamoClient, table: Optional[str] = None, *,
                    sleep: Callable[[float], None] = time.sleep, settings: Any = None) -> TableDefinition:
    """Every setting of ``table`` (default: the client's table) as a TableDefinition.

    ``settings`` is the botocore client for the six settings calls (default: :func:`settings_client`).
    """
    name = table or client.ref.table
    desc = client.describe_table(name)
    ctl = settings if settings is not None else settings_client(client)
    unread: Dict[str, str] = {}
    arn = str(desc.get("TableArn") or "")

    def get(setting: str, op: str, fn: Callable[..., Any], **kw: Any) -> Any:
        try:
            return call(fn, op, sleep=sleep, **kw)
        except Exception as e:
            if error_code(e) == "PolicyNotFoundException":
                return None  # no policy is an answer, not a failure
            unread.setdefault(setting, why(e, op))
            return None

    ttl = get("TimeToLiveSpecification", "DescribeTimeToLive", ctl.describe_time_to_live, TableName=name)
    backups = get("PointInTimeRecoverySpecification", "DescribeContinuousBackups", ctl.describe_continuous_backups,
                  TableName=name)
    tags: Optional[List[Dict[str, str]]] = None
    if arn:
        tags, token = [], None
        while True:
            kw: Dict[str, Any] = {"ResourceArn": arn}
            if token:
                kw["NextToken"] = token
            page = get("Tags", "ListTagsOfResource", ctl.list_tags_of_resource, **kw)
            if page is None:
                tags = None
                break
            tags.extend(page.get("Tags") or [])
            token = page.get("NextToken")
            if not token:
                break
    insights: Dict[Optional[str], Dict[str, Any]] = {}
    for index in [None] + [g["IndexName"] for g in desc.get("GlobalSecondaryIndexes") or []]:
        kw = {"TableName": name} if index is None else {"TableName": name, "IndexName": index}
        d = get("ContributorInsightsSpecification", "DescribeContributorInsights", ctl.describe_contributor_insights,
                **kw)
        if d is None:
            break
        insights[index] = d
    policy = None
    if arn:
        got = get("ResourcePolicy", "GetResourcePolicy", ctl.get_resource_policy, ResourceArn=arn)
        policy = (got or {}).get("Policy")
    kin = get("KinesisStreamSpecification", "DescribeKinesisStreamingDestination",
              ctl.describe_kinesis_streaming_destination, TableName=name)
    key = (desc.get("SSEDescription") or {}).get("KMSMasterKeyArn")
    defn = from_aws(
        desc,
        aws_managed_key=bool(key) and is_aws_managed_key(client, str(key)),
        ttl=(ttl or {}).get("TimeToLiveDescription"),
        backups=(backups or {}).get("ContinuousBackupsDescription"),
        tags=tags,
        insights=insights if "ContributorInsightsSpecification" not in unread else None,
        policy=policy,
        kinesis=(kin or {}).get("KinesisDataStreamDestinations"),
        unread=unread,
    )
    defn.label = f"table {name}" + (f" ({client.region})" if client.region else "")
    defn.region = defn.region or client.region  # from the ARN; an endpoint may report none
    return defn


def definition_of(side: Union[TableRef, str]) -> TableDefinition:
    """A table's definition (a TableRef) or a spec file's (a path)."""
    if isinstance(side, str):
        from ..aws.tables import load_spec
        from .spec import definition_from_spec

        spec = load_spec(side)
        props = spec.get("Properties", spec)
        # A spec without TableName can still be compared (names are never compared).
        return definition_from_spec(spec, None if isinstance(props, dict) and props.get("TableName") else "unnamed",
                                    path=side)
    client = DynamoClient(side, pool_size=1)
    try:
        return read_definition(client)
    finally:
        client.close()
