"""Re-model a flat subscriber table into a single-table design.

Source item (table ``Subscribers``, hash key ``SubscriberEmail``)::

    {"SubscriberEmail": "Ada@Example.com", "CharacterSet": "UTF-8", "DateSubscribed": "2019-03-14"}

Target item (table ``App``, keys ``PK``/``SK``, index ``GSI1`` on ``GSI1PK``/``GSI1SK``)::

    {"PK": "USER#<id>", "SK": "USER#<id>", "GSI1PK": "USER", "GSI1SK": "2019-03-14#<id>",
     "type": "User", "id": "<id>", "email": "ada@example.com", "charset": "UTF-8",
     "subscribedAt": "2019-03-14", "status": "ACTIVE", "marketingOptIn": False, "schemaVersion": 2}

``<id>`` is a UUID-5 of the normalised e-mail address: the same subscriber always gets the same
id, so re-running the migration (or resuming it) rewrites the same items instead of duplicating
them. Attributes this function does not know are carried over unchanged.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Dict

# A fixed namespace: changing it would give every user a new id.
NAMESPACE = uuid.UUID("6f1c1d3e-8a55-4d0e-9a7c-2f0c3b8e5a10")

RENAMES = {"SubscriberEmail": "email", "CharacterSet": "charset", "DateSubscribed": "subscribedAt"}
DEFAULTS: Dict[str, Any] = {"charset": "UTF-8", "status": "ACTIVE", "marketingOptIn": False}
SCHEMA_VERSION = Decimal(2)


def user_id(email: str) -> str:
    """Stable id: the same (normalised) address always maps to the same id."""
    return str(uuid.uuid5(NAMESPACE, email.strip().lower()))


def to_user(item: Dict[str, Any]) -> Dict[str, Any]:
    out = {RENAMES.get(k, k): v for k, v in item.items()}
    out["email"] = str(out["email"]).strip().lower()
    for k, v in DEFAULTS.items():
        out.setdefault(k, v)
    uid = user_id(out["email"])
    out.update({
        "PK": f"USER#{uid}",
        "SK": f"USER#{uid}",
        "GSI1PK": "USER",
        # Sorting the index by subscription date lists users oldest first.
        "GSI1SK": f"{out.get('subscribedAt', '')}#{uid}",
        "type": "User",
        "id": uid,
        "schemaVersion": SCHEMA_VERSION,
    })
    return out
