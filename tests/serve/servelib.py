"""Plumbing of effcam-serve's end-to-end tests: start the real server on 127.0.0.1 (a free port it picks itself),
talk HTTP to it with http.client or raw sockets, and stop it in every path.

    with Server(model) as server:
        status, headers, body = server.request("GET", "/health")
"""
import base64
import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
import effcam_testlib as t  # noqa: E402  (shared paths, checks, conversions)

SERVE = os.path.join(t.BINARY_DIR, "serve", "effcam-serve")
BENCH = os.path.join(t.BINARY_DIR, "bench", "effcam-bench")
HOST = "127.0.0.1"
# Under the sanitizers everything is ~20x slower: timeouts stretch with it.
SLOW = 20 if t.SANITIZED else 1


class Server:
    """effcam-serve in a child process; a context manager that always stops it (SIGTERM, then SIGKILL)."""

    def __init__(self, *models, args=(), start_timeout=60):
        self.args = [SERVE, "--port", "0"]
        for model in models:
            self.args += ["--model", model]
        self.args += list(args)
        self.start_timeout = start_timeout * SLOW
        self.process = None
        self.port = None
        self.banner = []   # stdout lines up to "listening on"
        self.stderr = []   # every stderr line (a thread keeps reading it)
        self.stdout = []   # stdout lines after the banner

    def __enter__(self):
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._drain, args=(self.process.stderr, self.stderr), daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        try:
            while time.monotonic() < deadline:
                line = self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"effcam-serve exited {self.process.wait()}: {''.join(self.stderr).strip()}")
                self.banner.append(line.rstrip("\n"))
                match = re.match(r"listening on http://[^:]+:(\d+)", line)
                if match:
                    self.port = int(match.group(1))
                    break
            if self.port is None:
                raise RuntimeError("effcam-serve did not start listening in time")
            threading.Thread(target=self._drain, args=(self.process.stdout, self.stdout), daemon=True).start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    @staticmethod
    def _drain(stream, lines):
        for line in stream:
            lines.append(line)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the server; returns its exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError("effcam-serve did not stop within the timeout after SIGTERM")

    def bound(self):
        """The memory bound the banner printed."""
        for line in self.banner:
            match = re.match(r"\s*bound\s+(\d+)", line)
            if match:
                return int(match.group(1))
        raise RuntimeError("no bound in the banner")

    def connection(self, timeout=60):
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout * SLOW)

    def request(self, method, path, body=None, headers=None, connection=None):
        """(status, headers dict with lower-case names, body bytes)."""
        own = connection is None
        connection = connection or self.connection()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            if own:
                connection.close()

    def json(self, method, path, body=None, headers=None, connection=None):
        status, headers_, data = self.request(method, path, body, headers, connection)
        return status, json.loads(data) if data else None

    def alive(self):
        """True when /health answers 200 with live: true (asked after every hostile request)."""
        try:
            status, body = self.json("GET", "/health")
            return status == 200 and body["live"] is True
        except (OSError, http.client.HTTPException, ValueError):
            return False

    def raw(self, data, read_timeout=10, shutdown=False):
        """Sends bytes on a fresh socket and returns all the server sent back until it closed or went quiet.
        shutdown half-closes the socket after sending (cpp-httplib then takes the client for gone and answers
        nothing: send "Connection: close" instead to have the server close after its answer)."""
        with socket.create_connection((HOST, self.port), timeout=read_timeout * SLOW) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(data)
                if shutdown:
                    sock.shutdown(socket.SHUT_WR)
            return read_all(sock)


def read_all(sock):
    chunks = []
    with contextlib.suppress(OSError):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def statuses(raw_answer):
    """The status codes of every HTTP response in a byte stream (pipelining)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw_answer)]


def multipart(fields):
    """A multipart/form-data body: fields is a list of (name, filename or None, content type, bytes)."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, filename, content_type, data in fields:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if content_type:
            out.write(f"Content-Type: {content_type}\r\n".encode())
        out.write(b"\r\n" + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def b64(data):
    return base64.b64encode(data).decode()


def jpeg_of(png_path, quality=90):
    """A JPEG copy of a test image (the uploads the load bars name), made with PIL, cached beside it."""
    out = os.path.splitext(png_path)[0] + f".q{quality}.jpg"
    if not os.path.exists(out):
        from PIL import Image
        scratch = f"{out}.tmp{os.getpid()}"
        Image.open(png_path).convert("RGB").save(scratch, "JPEG", quality=quality)
        os.replace(scratch, out)
    return out


def s_model(dtype="fp16"):
    """The generated EfficientNetV2-S (300x300) converted with effcam-convert."""
    model, _ = t.convert(t.keras_model("effv2s_functional.keras"), f"serve_effv2s_{dtype}.effcam", dtype)
    return model


def b0_model(dtype="fp16"):
    model, _ = t.convert(t.keras_model("effv2b0.keras"), f"serve_effv2b0_{dtype}.effcam", dtype)
    return model


def food101_model(dtype="fp16"):
    folder = t.FOOD101
    model, _ = t.convert(os.path.join(folder, "food101_effv2b0.keras"), f"serve_food101_{dtype}.effcam", dtype,
                         labels=os.path.join(folder, "labels.txt"))
    return model


def require_built():
    if not os.path.exists(SERVE):
        t.skip(f"{SERVE} is not built")
