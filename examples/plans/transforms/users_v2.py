"""Transform for eight_tables_cross_account.yaml: users get a schema version and lower-case emails."""

from __future__ import annotations

from typing import Any, Dict


def transform(item: Dict[str, Any]) -> Dict[str, Any]:
    if isinstance(item.get("email"), str):
        item["email"] = item["email"].strip().lower()
    item["schema_version"] = 2
    return item
