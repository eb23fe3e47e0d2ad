"""Transforms for remodel_two_into_one.yaml: two tables into one single-table design.

Each function takes one item (plain Python values) and returns the new item. Raising marks the
item as bad: with ``on_error: skip`` it goes to the job's dead-letter file with the reason.
"""

from __future__ import annotations

from typing import Any, Dict


def customer_to_shop(item: Dict[str, Any]) -> Dict[str, Any]:
    cid = item.pop("customer_id")
    out = {"PK": f"CUSTOMER#{cid}", "SK": "PROFILE", "type": "customer", "customer_id": cid}
    if item.get("email"):
        out["GSI1PK"] = f"EMAIL#{str(item['email']).lower()}"
    out.update(item)
    return out


def order_to_shop(item: Dict[str, Any]) -> Dict[str, Any]:
    oid = item.pop("order_id")
    cid = item.get("customer_id")
    if not cid:
        raise ValueError(f"order {oid} has no customer_id")
    out = {"PK": f"CUSTOMER#{cid}", "SK": f"ORDER#{oid}", "type": "order", "order_id": oid,
           "GSI1PK": f"ORDER#{oid}"}
    out.update(item)
    return out
