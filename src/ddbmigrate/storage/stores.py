"""Where files live: a local folder or ``s3://bucket/prefix``, behind one small interface.

Invariant: memory is bounded whatever the file size. Reads stream (``open_read`` returns a
file-like object read in chunks: a local file, or the body of an S3 GetObject); large writes go
to a local temporary file first and are uploaded with boto3's managed transfer (multipart above
its threshold), so no object is ever held in memory whole.

S3 endpoints are not DynamoDB endpoints. The S3 client uses ``S3Settings.endpoint_url`` when
given (``--s3-endpoint-url``), otherwise botocore's own resolution, which honours
``AWS_ENDPOINT_URL_S3`` and then ``AWS_ENDPOINT_URL``. The DynamoDB ``--endpoint-url`` is never
used for S3. Credentials come from the same chain as the table's (profile, role) unless the
S3-specific settings say otherwise.
"""

from __future__ import annotations

import glob as _glob
import hashlib
import os
import re
import shutil
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple

from ..aws.errors import error_code
from ..errors import AwsError, UsageError

GLOB_CHARS = "*?["


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3: region, profile, role and endpoint (all optional)."""

    region: Optional[str] = None
    profile: Optional[str] = None
    role_arn: Optional[str] = None
    endpoint_url: Optional[str] = None


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def split_s3(url: str) -> Tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    rest = url[5:]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UsageError(f"{url!r}: expected s3://bucket/prefix")
    return bucket, key


class Storage:
    """Paths are absolute local paths or full ``s3://bucket/key`` URLs."""

    def join(self, base: str, *parts: str) -> str:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def is_dir(self, path: str) -> bool:
        raise NotImplementedError

    def list_files(self, folder: str) -> List[Tuple[str, int]]:
        """Every file below ``folder`` (recursive), with its size, sorted by path."""
        raise NotImplementedError

    def glob(self, pattern: str) -> List[Tuple[str, int]]:
        raise NotImplementedError

    def size(self, path: str) -> int:
        raise NotImplementedError

    def version(self, path: str) -> str:
        """What changes when the file is rewritten: a resume reading line N of a file that is no
        longer the one its checkpoint read would skip the wrong lines."""
        return str(self.size(path))

    def open_read(self, path: str) -> BinaryIO:
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes:
        with self.open_read(path) as fh:
            return fh.read()

    def write_bytes(self, path: str, data: bytes) -> str:
        """Write a small object; returns its ETag (hex MD5 for a single-part object)."""
        raise NotImplementedError

    def put_file(self, local_path: str, path: str) -> str:
        """Move a finished local temporary file to ``path``; returns its ETag."""
        raise NotImplementedError

    def delete(self, path: str) -> None:
        raise NotImplementedError

    def relative(self, root: str, path: str) -> str:
        r = root.rstrip("/") + "/"
        return path[len(r):] if path.startswith(r) else path

    def temp_dir(self, near: str) -> str:
        """A folder of ddbmigrate's own for temporary files (on the destination's disk when it is
        local). Its own, because a sink removes it when it finds it empty: never the user's TMPDIR."""
        d = os.path.join(os.environ.get("TMPDIR") or "/tmp", "ddbmigrate-tmp")
        os.makedirs(d, exist_ok=True)
        return d


class LocalStorage(Storage):
    def join(self, base: str, *parts: str) -> str:
        return os.path.join(base, *parts)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def list_files(self, folder: str) -> List[Tuple[str, int]]:
        out = []

        def unreadable(e: OSError) -> None:
            # Skipped silently by os.walk, an unreadable folder read as "no data files in it".
            raise UsageError(f"cannot read the folder {e.filename or folder}: {e.strerror or e}")

        for root, dirs, files in os.walk(folder, onerror=unreadable):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in files:
                p = os.path.join(root, f)
                out.append((p, os.path.getsize(p)))
        return sorted(out)

    def glob(self, pattern: str) -> List[Tuple[str, int]]:
        return sorted((p, os.path.getsize(p)) for p in _glob.glob(pattern, recursive=True) if os.path.isfile(p))

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def version(self, path: str) -> str:
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}"

    def open_read(self, path: str) -> BinaryIO:
        try:
            return open(path, "rb")
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}", file=path) from None

    def write_bytes(self, path: str, data: bytes) -> str:
        # temp file -> fsync -> rename -> fsync folder: a reader sees the old file or the new one.
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
        return hashlib.md5(data).hexdigest()

    def put_file(self, local_path: str, path: str) -> str:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        h = hashlib.md5()
        with open(local_path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
            os.fsync(fh.fileno())
        os.replace(local_path, path)
        _fsync_dir(os.path.dirname(path))
        return h.hexdigest()

    def delete(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def temp_dir(self, near: str) -> str:
        # Same filesystem as the destination, so finishing a file is an atomic rename.
        d = os.path.join(near, ".ddbmigrate-tmp")
        os.makedirs(d, exist_ok=True)
        return d


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Storage(Storage):
    def __init__(self, settings: Optional[S3Settings] = None, *, client: Any = None) -> None:
        self.settings = settings or S3Settings()
        self._client = client
        self._lock = threading.Lock()
        self._etags: Dict[str, str] = {}  # path -> ETag, from the listings made

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _make_s3_client(self.settings)
            return self._client

    def join(self, base: str, *parts: str) -> str:
        out = base.rstrip("/")
        for p in parts:
            out += "/" + p.strip("/")
        return out

    def _call(self, what: str, path: str, fn: Any, **kw: Any) -> Any:
        try:
            return fn(**kw)
        except Exception as e:
            code = error_code(e)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise UsageError(f"{path} does not exist", file=path, code=code) from None
            if code == "NoSuchBucket":
                raise UsageError(f"bucket of {path} does not exist", file=path, code=code) from None
            raise AwsError(f"S3 {what} {path} failed: {type(e).__name__}: {str(e)[:300]}", file=path,
                           code=code) from None

    def exists(self, path: str) -> bool:
        bucket, key = split_s3(path)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as e:
            code = error_code(e)
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise AwsError(f"S3 HEAD {path} failed: {str(e)[:300]}", file=path, code=code) from None

    def is_dir(self, path: str) -> bool:
        bucket, key = split_s3(path)
        prefix = key.rstrip("/") + "/" if key else ""
        resp = self._call("LIST", path, self.client.list_objects_v2, Bucket=bucket, Prefix=prefix, MaxKeys=1)
        return bool(resp.get("KeyCount") or resp.get("Contents"))

    def _iter(self, bucket: str, prefix: str) -> Iterator[Tuple[str, int]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        try:
            for page in pages:
                for o in page.get("Contents") or []:
                    path = f"s3://{bucket}/{o['Key']}"
                    self._etags[path] = str(o.get("ETag", "")).strip('"')
                    yield path, int(o["Size"])
        except Exception as e:
            raise AwsError(f"S3 LIST s3://{bucket}/{prefix} failed: {str(e)[:300]}") from None

    def list_files(self, folder: str) -> List[Tuple[str, int]]:
        bucket, key = split_s3(folder)
        prefix = key.rstrip("/") + "/" if key else ""
        return sorted(self._iter(bucket, prefix))

    def glob(self, pattern: str) -> List[Tuple[str, int]]:
        bucket, key = split_s3(pattern)
        cut = min((key.find(c) for c in GLOB_CHARS if c in key), default=len(key))
        prefix = key[:cut]
        match = glob_regex(key).fullmatch
        return sorted((p, s) for p, s in self._iter(bucket, prefix) if match(p[len(bucket) + 6:]))

    def size(self, path: str) -> int:
        bucket, key = split_s3(path)
        return int(self._call("HEAD", path, self.client.head_object, Bucket=bucket, Key=key)["ContentLength"])

    def version(self, path: str) -> str:
        got = self._etags.get(path)  # from the listing that found the file: no request per file
        if got:
            return got
        bucket, key = split_s3(path)
        return str(self._call("HEAD", path, self.client.head_object, Bucket=bucket, Key=key).get("ETag", "")).strip('"')

    def open_read(self, path: str) -> BinaryIO:
        bucket, key = split_s3(path)
        body = self._call("GET", path, self.client.get_object, Bucket=bucket, Key=key)["Body"]
        return body  # type: ignore[no-any-return]  # botocore StreamingBody: read(n), close()

    def write_bytes(self, path: str, data: bytes) -> str:
        bucket, key = split_s3(path)
        resp = self._call("PUT", path, self.client.put_object, Bucket=bucket, Key=key, Body=data)
        return str(resp.get("ETag", "")).strip('"')

    def put_file(self, local_path: str, path: str) -> str:
        bucket, key = split_s3(path)
        # Managed transfer: multipart above its threshold, streaming from disk.
        self._call("upload", path, self.client.upload_file, Filename=local_path, Bucket=bucket, Key=key)
        head = self._call("HEAD", path, self.client.head_object, Bucket=bucket, Key=key)
        try:
            os.unlink(local_path)
        except FileNotFoundError:
            pass
        return str(head.get("ETag", "")).strip('"')

    def delete(self, path: str) -> None:
        bucket, key = split_s3(path)
        self._call("DELETE", path, self.client.delete_object, Bucket=bucket, Key=key)

    def bucket_encryption(self, bucket: str) -> Tuple[str, Optional[str]]:
        """How S3 encrypts new objects in ``bucket`` (an export's ``s3SseAlgorithm`` and
        ``s3SseKmsKeyId``): ``("KMS", key)`` for a KMS default, else ``("AES256", None)`` (S3's
        own default, also when the bucket's setting cannot be read)."""
        try:
            rules = self.client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            default = rules[0]["ApplyServerSideEncryptionByDefault"]
        except Exception:  # no configuration, no permission: S3 encrypts with SSE-S3 anyway
            return "AES256", None
        if str(default.get("SSEAlgorithm", "")).startswith("aws:kms"):
            return "KMS", default.get("KMSMasterKeyID")
        return "AES256", None


def glob_regex(pattern: str) -> "re.Pattern[str]":
    """A glob over keys as ``glob.glob(recursive=True)`` reads it over paths, so that the same
    pattern names the same files in S3 as on disk: ``*``, ``?`` and ``[...]`` stay inside one
    segment (S3 keys are flat strings, and fnmatch's ``*`` would cross ``/``), a segment that is
    exactly ``**`` spans any number of folders, and a wildcard does not match a leading dot."""
    segs = pattern.split("/")
    out = []
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if seg == "**":
            out.append("(?:[^/.][^/]*/)*(?:[^/.][^/]*)?" if last else "(?:[^/.][^/]*/)*")
            continue
        rx = "(?!\\.)" if seg[:1] and seg[:1] in GLOB_CHARS else ""
        j = 0
        while j < len(seg):
            c = seg[j]
            j += 1
            if c == "*":
                rx += "[^/]*"
            elif c == "?":
                rx += "[^/]"
            elif c == "[":
                end = seg.find("]", j + 1 if seg[j:j + 1] in ("!", "]") else j)
                if end < 0:
                    rx += "\\["
                    continue
                body = seg[j:end].replace("\\", "\\\\").replace("[", "\\[")
                j = end + 1
                if body.startswith("!"):
                    body = "^" + body[1:]
                elif body.startswith("^"):
                    body = "\\" + body
                rx += f"[{body}]"
            else:
                rx += re.escape(c)
        out.append(rx + ("" if last else "/"))
    return re.compile("".join(out), re.DOTALL)


def _make_s3_client(s: S3Settings) -> Any:
    from botocore.config import Config

    from ..aws.client import make_session
    from ..config import TableRef

    # make_session builds the credential chain (profile, assumed role) from a TableRef; the
    # table name is a placeholder, only the AWS settings are used.
    session = make_session(TableRef("s3-storage", region=s.region, profile=s.profile, role_arn=s.role_arn))
    cfg = Config(retries={"mode": "standard", "max_attempts": 10}, max_pool_connections=32)
    return session.client("s3", region_name=session.region_name or "us-east-1", endpoint_url=s.endpoint_url,
                          config=cfg)


def storage_for(url: str, s3: Optional[S3Settings] = None) -> Storage:
    return S3Storage(s3) if is_s3(url) else LocalStorage()


def normalize(url: str) -> str:
    """Absolute local path, or the S3 URL without a trailing slash."""
    if is_s3(url):
        # A URL naming no bucket (s3://, s3:///x) is refused here: stripped, "s3://" was "s3:", a
        # local folder of that name.
        split_s3(url)
        return url.rstrip("/")
    return os.path.abspath(os.path.expanduser(url))


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
