"""Identity transform for benchmarks: measures the wire <-> Python conversion cost alone."""


def identity(item):
    return item
