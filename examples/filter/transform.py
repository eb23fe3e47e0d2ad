"""Filter: drop items that should not reach the new table; keep the rest unchanged.

Returning ``None`` drops an item; the report counts it under ``dropped`` (it is neither written
nor dead-lettered), so ``read == written + dropped`` still adds up.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

TEST_DOMAINS = ("@example.test", "@test.invalid")


def keep_live(item: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Drop soft-deleted items and test accounts."""
    if item.get("deleted") is True or item.get("status") == "DELETED":
        return None
    email = item.get("email")
    if isinstance(email, str) and email.lower().endswith(TEST_DOMAINS):
        return None
    return item
