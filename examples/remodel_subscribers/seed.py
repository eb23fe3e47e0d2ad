"""Fill the legacy ``Subscribers`` table with a few sample subscribers (plain boto3).

    python examples/remodel_subscribers/seed.py --endpoint-url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

import boto3

SUBSCRIBERS: List[Dict[str, Any]] = [
    {"SubscriberEmail": {"S": "Ada@Example.com"}, "CharacterSet": {"S": "UTF-8"},
     "DateSubscribed": {"S": "2019-03-14"}},
    {"SubscriberEmail": {"S": "grace@example.com"}, "CharacterSet": {"S": "ISO-8859-1"},
     "DateSubscribed": {"S": "2020-11-02"}},
    # No CharacterSet: the transform fills in the default.
    {"SubscriberEmail": {"S": "linus@example.org"}, "DateSubscribed": {"S": "2021-06-30"}},
    # An attribute the transform does not know is carried over unchanged.
    {"SubscriberEmail": {"S": "margaret@example.net"}, "CharacterSet": {"S": "UTF-8"},
     "DateSubscribed": {"S": "2018-01-09"}, "Tags": {"SS": ["apollo", "nasa"]}},
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--table", default="Subscribers")
    ap.add_argument("--endpoint-url")
    ap.add_argument("--region", default="us-east-1")
    a = ap.parse_args()
    c = boto3.client("dynamodb", endpoint_url=a.endpoint_url, region_name=a.region)
    for item in SUBSCRIBERS:
        c.put_item(TableName=a.table, Item=item)
    print(f"put {len(SUBSCRIBERS)} subscribers into {a.table}")


if __name__ == "__main__":
    main()
