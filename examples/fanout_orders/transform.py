"""Fan-out: one order item becomes an order header plus one item per order line.

Source item (table ``Orders``, hash key ``orderId``)::

    {"orderId": "o-1001", "customerId": "c-7", "createdAt": "2024-05-01T10:00:00Z",
     "lines": [{"sku": "BOOK-1", "qty": 2, "price": Decimal("12.50")}, ...]}

Target items (single table, keys ``PK``/``SK``, index ``GSI1`` lists a customer's orders)::

    {"PK": "ORDER#o-1001", "SK": "ORDER#o-1001", "type": "Order", "customerId": "c-7",
     "createdAt": "...", "lineCount": 2, "total": Decimal("37.50"),
     "GSI1PK": "CUSTOMER#c-7", "GSI1SK": "ORDER#2024-05-01T10:00:00Z"}
    {"PK": "ORDER#o-1001", "SK": "LINE#001", "type": "OrderLine", "sku": "BOOK-1", "qty": 2,
     "price": Decimal("12.50"), "amount": Decimal("25.00")}

Line sort keys come from the line's position, not its SKU: two lines with the same SKU would
otherwise get the same key, and ddbmigrate would keep the first and dead-letter the second.
Numbers are Decimals, so money keeps its exact value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Dict, List


def split_order(order: Dict[str, Any]) -> List[Dict[str, Any]]:
    oid = order["orderId"]
    pk = f"ORDER#{oid}"
    lines = order.get("lines") or []
    out: List[Dict[str, Any]] = []
    total = Decimal(0)
    for n, line in enumerate(lines, start=1):
        amount = Decimal(line["qty"]) * Decimal(line["price"])
        total += amount
        out.append({"PK": pk, "SK": f"LINE#{n:03d}", "type": "OrderLine", "orderId": oid,
                    "sku": line["sku"], "qty": line["qty"], "price": line["price"], "amount": amount})
    header = {k: v for k, v in order.items() if k not in ("orderId", "lines")}
    header.update({"PK": pk, "SK": pk, "type": "Order", "orderId": oid, "lineCount": len(lines),
                   "total": total, "GSI1PK": f"CUSTOMER#{order['customerId']}",
                   "GSI1SK": f"ORDER#{order.get('createdAt', '')}"})
    return [header] + out
