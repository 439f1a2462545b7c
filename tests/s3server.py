"""A real S3 API server on 127.0.0.1 for tests: moto's server, in a thread or in its own process.

``S3Server(mode="process")`` (the default) runs ``moto.server.main`` in a child process, so
a test can kill it (``kill()`` is SIGKILL) and start it again on the same port, and any other
process (Ray workers, a second writer) reaches it through ``endpoint`` and ``env()``. The child
watches its parent and exits when the parent goes away, however the parent ended; ``stop()`` also
runs at interpreter exit.

``S3Server(mode="thread")`` runs moto's ``ThreadedMotoServer`` inside this process: quicker to
start, reachable from other processes while this one lives, but it cannot be killed on its own.

Moto keeps everything in memory: a restarted server starts empty. ``persist=PATH`` makes it
survive a restart all the same by moto's request recorder (``MOTO_ENABLE_RECORDING``,
``MOTO_RECORDER_FILEPATH``): every request is appended to PATH as it arrives (one at a
time: moto's recorder alone interleaves concurrent ones), and a server
started on an existing PATH replays it before it opens its port. Process mode only. Requests are
recorded in the order they arrive, not the order moto finished them: two racing conditional PUTs
(two commits to one branch) could replay in the other order, so restart between races, not
during one.

    with S3Server() as s3:
        s3.make_bucket("archive")
        for name, value in s3.env().items():  # before ray.init or starting a child process
            monkeypatch.setenv(name, value)
        storage = s3.storage("archive", "radar")  # icechunk.s3_storage(...) for this server

A dead server makes each icechunk call block for 10-45 s (the AWS SDK's own retries) before it
raises ``icechunk.IcechunkError``; a restart within a few seconds is bridged by those retries.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"

# The child runs moto's own server, with a thread that ends it when its parent is gone (killed
# -9 included), so that no server outlives the test run. With recording on, it first replays the
# recorded requests into its fresh in-memory backends through the WSGI app, without a socket:
# clients see connection refused (which they retry) until the state is whole, never half of it.
_CHILD = """
import base64, json, os, sys, threading, time
from urllib.parse import urlsplit
parent = int(sys.argv[1])
def _watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
record = os.environ.get("MOTO_RECORDER_FILEPATH")
if os.environ.get("MOTO_ENABLE_RECORDING") and record:
    # moto's recorder appends each request from the server's request thread as two writes
    # (the entry, then a newline) with no lock: concurrent requests interleave into lines that
    # no longer parse, and those requests were lost on replay. One request at a time here.
    from moto.moto_api._internal.recorder.models import Recorder
    _record, _lock = Recorder._record_request, threading.Lock()
    def _record_one(self, request, body=None):
        with _lock:
            _record(self, request, body)
    Recorder._record_request = _record_one
if os.environ.get("MOTO_ENABLE_RECORDING") and record and os.path.exists(record):
    from werkzeug.test import Client
    from moto.moto_api import recorder
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    recorder.stop_recording()
    with open(record, "rb+") as f:  # a last line cut short by a kill: never answered, dropped
        data = f.read()
        f.truncate(data.rfind(b"\\n") + 1)
    client = Client(DomainDispatcherApplication(create_backend_app))
    with open(record) as f:
        for line in f:
            entry = json.loads(line)  # any other bad line is a lost request: fail loudly
            url = urlsplit(entry["url"])
            if url.path.startswith("/moto-api/"):
                continue
            raw = url.path + ("?" + url.query if url.query else "")
            body = entry.get("body") or b""
            if entry.get("body_encoded"):
                body = base64.b64decode(body)
            headers = dict(entry["headers"])
            if headers.get("Transfer-Encoding", "") == "chunked":
                del headers["Transfer-Encoding"]
            client.open(raw, method=entry["method"], headers=headers, data=body,
                        environ_overrides={"RAW_URI": raw})
    recorder.start_recording()
from moto.server import main
main(sys.argv[2:])
"""


def free_port() -> int:
    """A port that nothing listens on now (the kernel's pick; it may be taken before use)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class S3Server:
    """Moto's S3 API on ``http://127.0.0.1:PORT``; see the module docstring."""

    def __init__(
        self,
        mode: str = "process",
        port: int | None = None,
        region: str = REGION,
        persist: str | os.PathLike | None = None,
        start_timeout: float = 30.0,
        log: str | os.PathLike | None = None,
    ) -> None:
        if mode not in ("process", "thread"):
            raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
        if persist is not None and mode != "process":
            raise ValueError("persist needs mode='process'")
        self.mode = mode
        self.port = port
        self.region = region
        self.persist = Path(persist) if persist is not None else None
        self.start_timeout = start_timeout
        self.log = Path(log) if log else Path(tempfile.mkdtemp(prefix="moto")) / "server.log"
        self._proc: subprocess.Popen | None = None
        self._thread_server = None
        self._atexit = False
        self._owner = os.getpid()

    # -- life cycle -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("S3Server not started")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._thread_server is not None

    def start(self) -> S3Server:
        """Start the server and wait until it answers (at most ``start_timeout`` seconds)."""
        if self.running:
            return self
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        if self.mode == "thread":
            self._start_thread()
        else:
            self._start_process()
        return self

    def _start_thread(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        server = ThreadedMotoServer(ip_address=HOST, port=self.port or 0, verbose=False)
        server.start()
        self.port = server.get_host_and_port()[1]
        self._thread_server = server
        self._wait_ready()

    def _start_process(self) -> None:
        if self.port is None:
            self.port = free_port()
        env = {**os.environ, **self.env()}
        for name in ("MOTO_ENABLE_RECORDING", "MOTO_RECORDER_FILEPATH"):
            env.pop(name, None)
        if self.persist is not None:
            self.persist.parent.mkdir(parents=True, exist_ok=True)
            env["MOTO_ENABLE_RECORDING"] = "1"
            env["MOTO_RECORDER_FILEPATH"] = str(self.persist)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(os.getpid()), "-H", HOST, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, not here
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {self._proc.returncode}; log:\n{self._tail()}"
                )
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2):
                    return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"moto server on {self.endpoint} not ready in {self.start_timeout}s; "
                    f"log:\n{self._tail()}"
                )
            time.sleep(0.05)

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s). The port is kept for ``start()``."""
        if os.getpid() != self._owner:  # a forked child running atexit: not its server
            return
        if self._thread_server is not None:
            server, self._thread_server = self._thread_server, None
            server.stop()
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def kill(self) -> None:
        """SIGKILL the server process at once (what a crash looks like to clients)."""
        if self.mode != "process":
            raise RuntimeError("kill() needs mode='process'")
        if self._proc is not None:
            proc, self._proc = self._proc, None
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def restart(self, kill: bool = True) -> S3Server:
        """Kill (or stop) and start again on the same port."""
        self.kill() if kill and self.mode == "process" else self.stop()
        return self.start()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients ----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for clients of this server, for this process or its children.

        icechunk 1.1 ``s3_storage(bucket=..., prefix=..., from_env=True)`` needs nothing else:
        it reads the keys, the region and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``).
        boto3 reads them all. pyarrow's ``S3FileSystem`` reads the keys and the region but NOT
        the endpoint: pass ``endpoint_override`` and ``scheme="http"`` (see ``pyarrow_fs``).
        ``AWS_ALLOW_HTTP`` is for object_store-based clients (obstore); icechunk ignores it.
        """
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error if it exists); returns the name."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def storage(self, bucket: str, prefix: str, **kwargs):
        """``icechunk.s3_storage`` pointed at this server."""
        import icechunk

        return icechunk.s3_storage(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=self.endpoint,
            region=self.region,
            allow_http=True,
            force_path_style=True,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            **kwargs,
        )

    def pyarrow_fs(self):
        """``pyarrow.fs.S3FileSystem`` pointed at this server."""
        from pyarrow import fs

        return fs.S3FileSystem(
            endpoint_override=f"{HOST}:{self.port}",
            scheme="http",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=self.region,
        )
