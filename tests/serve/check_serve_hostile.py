"""effcam-serve against hostile and broken clients: each request gets its status (or the connection is dropped
where no answer is possible) and /health answers right after it. Runs in the plain and the ASan/UBSan build (where
leaks and memory errors abort the server, which the final exit status check catches).

  hostile   the issue's list: no body, a body longer / shorter than Content-Length, a 10 GB Content-Length, a 1 MB
            header line, 10,000 headers, slowloris, chunked garbage, multipart without boundary / without the image
            field, a non-image, a PNG bomb, a 60000x60000 header, unknown model and layer, negative and huge top_k,
            invalid UTF-8 and % escapes in the query, pipelined requests, HTTP/1.0, a client closing mid-upload
"""
import io
import json
import os
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servelib as s  # noqa: E402
from servelib import t  # noqa: E402

MAX_BODY = 1 << 20  # the server runs with --max-body 1 MiB here
# --timeout-ms (the slowloris is dropped after it): 3 s, 9 s under the sanitizers, where the good requests of
# the test take seconds; not SLOW's 20x, which would only make the slowloris wait a minute.
TIMEOUT_MS = 9000 if t.SANITIZED else 3000


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, idat):
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_bomb():
    """A 20000x20000 RGB PNG whose zlib stream (all zeros) is small: 1.2 GB of pixels from ~1 MB."""
    width = height = 20000
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png(width, height, data)


def huge_header_png():
    """A PNG announcing 60000x60000 pixels (10.8 GB decoded) with a tiny body."""
    return png(60000, 60000, zlib.compress(b"\x00" * 64))


def answer_status(raw):
    codes = s.statuses(raw)
    return codes[0] if codes else None


def error_line(raw):
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
    try:
        return json.loads(body.split(b"HTTP/1.1")[0])["error"]
    except (ValueError, KeyError, TypeError):
        return None


def hostile():
    s.require_built()
    model = s.food101_model("fp16")
    photo = s.read(os.path.join(t.FOOD101, "samples", "bibimbap.png"))
    with s.Server(f"food={model}", args=["--sessions", "1", "--queue", "2", "--max-body", str(MAX_BODY),
                                         "--timeout-ms", str(TIMEOUT_MS)]) as server:
        def after(what):
            t.check(server.alive(), f"{what}: /health answers afterwards")

        def expect(raw_request, expected, what, **kwargs):
            answer = server.raw(raw_request, **kwargs)
            got = answer_status(answer)
            ok = got in expected if isinstance(expected, tuple) else got == expected
            t.check(ok, f"{what}: {expected} (got {got}: {error_line(answer)})")
            after(what)
            return answer

        head = "POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        expect(f"{head}Content-Type: image/png\r\nContent-Length: 0\r\n\r\n".encode(), 400, "no body")
        expect(f"{head}Content-Type: image/png\r\n\r\n".encode(), 400, "no body and no Content-Length")
        # Longer than Content-Length: the image is read up to its length and answered; the rest is dropped with the
        # connection (Connection: close).
        expect(f"{head}Content-Type: image/png\r\nContent-Length: {len(photo)}\r\n\r\n".encode() + photo +
               b"trailing junk that is no request\r\n\r\n", 200, "a body longer than Content-Length")
        # Shorter: the server waits for the rest, then gives up when the client stops sending.
        expect(f"{head}Content-Type: image/png\r\nContent-Length: {len(photo)}\r\n\r\n".encode() + photo[:1000],
               400, "a body shorter than Content-Length")
        # 10 GB announced: 413 before a byte of it is read (the client has sent only the headers).
        started = time.monotonic()
        expect(f"{head}Content-Type: image/png\r\nContent-Length: 10000000000\r\n\r\n".encode(), 413,
               "a 10 GB Content-Length", shutdown=False, read_timeout=2)
        t.check(time.monotonic() - started < 5 * s.SLOW, "the 413 comes without waiting for the body")
        expect(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Long: " + b"a" * (1 << 20) + b"\r\n\r\n",
               400, "a 1 MB header line")
        many = "".join(f"X-H{i}: {i}\r\n" for i in range(10000))
        expect(f"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{many}\r\n".encode(), 431,
               "10,000 headers")

        # Slowloris: one byte a second; the server drops it after --timeout-ms without holding a session.
        sock = socket.create_connection((s.HOST, server.port), timeout=30 * s.SLOW)
        started = time.monotonic()
        dropped_after = None
        request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 10\r\n"
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(1)
                status, health = server.json("GET", "/health")
                t.check(health["models"]["food"]["busy"] == 0, "slowloris: no session held while it trickles") \
                    if byte == request[5] else None
                if time.monotonic() - started > 3 * TIMEOUT_MS / 1000:
                    break
        except OSError:
            dropped_after = time.monotonic() - started
        if dropped_after is None:
            sock.settimeout(5 * s.SLOW)
            try:
                dropped_after = None if sock.recv(1) else time.monotonic() - started
            except OSError:
                dropped_after = time.monotonic() - started
        sock.close()
        t.check(dropped_after is not None and dropped_after < 2.5 * TIMEOUT_MS / 1000,
                f"slowloris: dropped after {dropped_after} s (timeout {TIMEOUT_MS} ms)")
        after("slowloris")

        expect(f"{head}Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\ngarbage\r\n0\r\n\r\n".encode(),
               400, "chunked garbage")
        body, _ = s.multipart([("image", "a.png", "image/png", photo)])
        expect(f"{head}Content-Type: multipart/form-data\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body, 400,
               "multipart without a boundary")
        body, content_type = s.multipart([("picture", "a.png", "image/png", photo)])
        expect(f"{head}Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body, 400,
               "multipart without the image field")
        for data, what in ((b"GIF89a but not really" * 10, "a non-image"), (png_bomb(), "a PNG bomb"),
                           (huge_header_png(), "a 60000x60000 header")):
            status, _, answer = server.request("POST", "/predict", data, {"Content-Type": "image/png"})
            t.check(status in (400, 413), f"{what} ({len(data)} bytes): 400 or 413 (got {status}: {answer[:200]})")
            after(what)
        for path, expected, what in (("/v1/models/nope/predict", 404, "unknown model"),
                                     ("/predict?cam=gradcam&cam_layer=nope", 422, "unknown layer"),
                                     ("/predict?top_k=-5", 422, "negative top_k"),
                                     ("/predict?top_k=184467440737095516160", 422, "huge top_k"),
                                     ("/predict?cam_layer=%FF%FE%00", 422, "invalid UTF-8 in the query"),
                                     ("/predict?cam=%zz%", 422, "bad % escapes in the query")):
            status, _, answer = server.request("POST", path, photo, {"Content-Type": "image/png"})
            try:
                json.loads(answer)  # the error line is valid JSON (invalid UTF-8 replaced)
                valid = True
            except ValueError:
                valid = False
            t.check(status == expected and valid, f"{what}: {expected} with a JSON body (got {status})")
            after(what)

        # Pipelined: three requests in one write. cpp-httplib 0.11 answers the first and loses what it had read
        # ahead past it (a new read buffer per request), so the rest are answered 400 and the connection closes:
        # every request gets an answer, none is served wrongly, and the server carries on.
        pipelined = (b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n" +
                     f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     f"Content-Length: {len(photo)}\r\n\r\n".encode() + photo +
                     b"GET /v1/models/food HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        codes = s.statuses(server.raw(pipelined))
        t.info(f"pipelined requests answered {codes}")
        t.check(codes[:1] == [200] and all(code in (200, 400) for code in codes),
                f"pipelined requests: the first 200, the others 200 or 400 (got {codes})")
        after("pipelined")
        answer = server.raw(b"GET /health HTTP/1.0\r\n\r\n")
        t.check(answer_status(answer) == 200, "HTTP/1.0: 200 and the connection closed")
        after("HTTP/1.0")
        # A client closing mid-upload: half the body, then gone.
        with socket.create_connection((s.HOST, server.port), timeout=10) as sock:
            sock.sendall(f"{head}Content-Type: image/png\r\nContent-Length: {len(photo)}\r\n\r\n".encode() +
                         photo[: len(photo) // 2])
        time.sleep(0.2)
        after("a client closing mid-upload")
        status, answer = server.json("POST", "/predict", photo, {"Content-Type": "image/png"})
        t.check(status == 200 and answer["top_k"][0]["label"] == "bibimbap", "a good request after all of them")
        code = server.stop()
        t.check(code == 0, f"the server exits 0 on SIGTERM after the hostile requests (got {code})")
        t.check(not any("AddressSanitizer" in line or "runtime error" in line for line in server.stderr),
                "no sanitizer report")


if __name__ == "__main__":
    hostile()
    t.finish()
