"""File formats, below sources and sinks: Ion both ways (:mod:`.ion`), CSV, Data Pipeline and
Scan-page records (:mod:`.records`), ZSTD (:mod:`.compression`), and deciding a data file's format
from its head (:mod:`.detect`). Pure codecs: no storage, no pipeline."""
