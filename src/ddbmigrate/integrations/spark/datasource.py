"""A PySpark Python Data Source (Spark 4+): read a DynamoDB table into a DataFrame.

    from ddbmigrate.integrations.spark.datasource import register
    register(spark)
    df = (spark.read.format("ddbmigrate.dynamodb")
          .option("table", "orders").option("region", "eu-west-1").option("segments", 64)
          .load())                       # one column: item (DynamoDB JSON of the item, lossless)
    df = (spark.read.format("ddbmigrate.dynamodb").schema("pk string, total decimal(38,2), tags array<string>")
          .option("table", "orders").load())   # chosen attributes, converted per the schema

One Spark partition per parallel-scan segment, read by ddbmigrate's own scan
(sources/table_scan.py: counted retries, ReturnConsumedCapacity, the fast JSON path). Options:
``table`` (name or ARN, required), ``region``, ``profile``, ``role_arn``, ``endpoint_url``,
``segments`` (default from DescribeTable's size), ``consistent_read`` (true/false),
``max_read_units`` (the job's limit, divided among the segments of one read).

Invariant: with the default schema every item is returned exactly as DynamoDB sent it (wire
format JSON), so nothing is lost. A user schema converts attribute by attribute: an attribute
the item lacks, or a value that does not fit the chosen type (a fraction or a 38-digit number
for ``long``), is null, never truncated; use ``decimal(38,s)`` or ``string`` for exact numbers.
Needs Spark 4 (Python Data Source API) and pyarrow, which that API uses; this module imports
pyspark, so the core never imports it.
"""

from __future__ import annotations

import threading
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Dict, Iterator, List, Optional, Tuple

import orjson
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegralType,
    StringType,
    StructType,
)

from ...config import TableRef

NAME = "ddbmigrate.dynamodb"
DEFAULT_SCHEMA = "item string"


def _truthy(v: Optional[str]) -> bool:
    return str(v or "").lower() in ("1", "true", "yes")


class DynamoDBDataSource(DataSource):
    """``spark.read.format("ddbmigrate.dynamodb")``: a table, one partition per scan segment."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self) -> str:
        return DEFAULT_SCHEMA

    def reader(self, schema: StructType) -> "DynamoDBReader":
        return DynamoDBReader(dict(self.options), schema)


class DynamoDBReader(DataSourceReader):
    def __init__(self, options: Dict[str, str], schema: StructType) -> None:
        from ...aws.client import DynamoClient
        from ...errors import UsageError
        from ...sources.table_scan import default_segments

        if not options.get("table"):
            raise UsageError(f'{NAME}: give .option("table", NAME_OR_ARN)')
        self.ref = TableRef(options["table"], region=options.get("region"), profile=options.get("profile"),
                            role_arn=options.get("role_arn"), endpoint_url=options.get("endpoint_url"))
        self.schema = schema
        self.consistent = _truthy(options.get("consistent_read"))
        self.segments = int(options.get("segments") or 0)
        rate = float(options.get("max_read_units") or 0)
        if self.segments <= 0:
            c = DynamoClient(self.ref, pool_size=2)
            try:
                self.segments = default_segments(c.describe_table())
            finally:
                c.close()
        self.rate = rate / self.segments if rate else None

    def partitions(self) -> List[InputPartition]:
        return [InputPartition(s) for s in range(self.segments)]

    def read(self, partition: InputPartition) -> Iterator[Tuple[Any, ...]]:
        from ...aws.capacity import limiter_for
        from ...aws.client import DynamoClient
        from ...sources.table_scan import TableScanSource

        seg = int(partition.value)
        client = DynamoClient(self.ref, pool_size=2)
        try:
            scan = TableScanSource(client, self.ref.table, self.segments, consistent_read=self.consistent,
                                   limiter=limiter_for(self.rate), segments=[seg])
            raw = [f.name for f in self.schema.fields] == ["item"] and \
                isinstance(self.schema.fields[0].dataType, StringType)
            for chunk in scan.read(str(seg), None, threading.Event()):
                for it in chunk.items:
                    yield (orjson.dumps(it).decode(),) if raw else row(it, self.schema)
        finally:
            client.close()


def row(item: Dict[str, Any], schema: StructType) -> Tuple[Any, ...]:
    """The schema's fields from one wire item (missing attributes are null)."""
    from ...core.items import to_python

    out = []
    for f in schema.fields:
        v = item.get(f.name)
        out.append(None if v is None else convert(to_python({f.name: v})[f.name], v, f.dataType))
    return tuple(out)


_BITS = {"ByteType": 8, "ShortType": 16, "IntegerType": 32, "LongType": 64}


def convert(py: Any, wire: Any, t: Any) -> Any:
    if py is None:
        return None
    if isinstance(t, StringType):
        return py if isinstance(py, str) else orjson.dumps(wire).decode()  # other types: their DynamoDB JSON
    if isinstance(t, IntegralType):
        # Never truncate or wrap: a fraction, or a number outside the type's range, is null.
        if not isinstance(py, (Decimal, int)) or isinstance(py, bool) or py != int(py):
            return None
        bits = _BITS.get(type(t).__name__, 64)
        n = int(py)
        return n if -(2 ** (bits - 1)) <= n < 2 ** (bits - 1) else None
    if isinstance(t, (DoubleType, FloatType)):
        return float(py) if isinstance(py, (Decimal, int)) and not isinstance(py, bool) else None
    if isinstance(t, DecimalType):
        if not isinstance(py, (Decimal, int)) or isinstance(py, bool):
            return None
        try:
            q = Decimal(py).quantize(Decimal(1).scaleb(-t.scale), context=Context(prec=80))
        except InvalidOperation:
            return None
        # Exact only: no rounding to the scale, no more digits than the precision.
        return q if q == py and len(q.as_tuple().digits) <= t.precision else None
    if isinstance(t, BooleanType):
        return py if isinstance(py, bool) else None
    if isinstance(t, BinaryType):
        return bytes(py) if isinstance(py, (bytes, bytearray)) else None
    if isinstance(t, ArrayType) and isinstance(py, (list, set, frozenset)):
        elems = sorted(py, key=str) if isinstance(py, (set, frozenset)) else list(py)
        return [convert(e, None, t.elementType) for e in elems]
    return py


def register(spark: Any) -> None:
    """Make ``spark.read.format("ddbmigrate.dynamodb")`` available in this session."""
    spark.dataSource.register(DynamoDBDataSource)


__all__ = ["DynamoDBDataSource", "NAME", "register"]
