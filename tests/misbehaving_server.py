"""A real HTTP server on 127.0.0.1 that misbehaves on purpose, one `mode` per instance (standard library only):

    silent       accepts the connection, reads the request, never answers
    trickle      a 200 with a valid body sent one byte every 0.2 s
    sse          a never-ending text/event-stream
    huge         a 200 declaring (and sending) 64 MiB
    huge_chunked a 200 streaming chunks without a Content-Length, past any limit
    json:BODY    a 200 whose body is BODY (any JSON text, wrong types included)
    echo401      a 401 whose message echoes the Authorization header it got, raw
    ok           a well-formed chat completion
    reply:TEXT   a well-formed chat completion answering TEXT, after `delay` seconds
    then_silent:N:TEXT   answers TEXT to the first N requests, then never answers again
    reply_auth   a well-formed chat completion whose answer is the Authorization header it got
    garbage      bytes that are not HTTP
    hangup       closes the connection without a word
    short_body   a 200 that declares 100 bytes and sends 10

It counts requests, the most in flight at once, and keeps the Authorization headers it received.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time

GOOD_BODY = {"id": "x", "object": "chat.completion", "created": 0, "model": "alpha",
             "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class MisbehavingServer:
    def __init__(self, mode: str, delay: float = 0.0):
        self.mode, self.delay = mode, delay
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.requests = 0
        self.authorizations: list[str] = []
        self.stop = threading.Event()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(10)
                try:
                    head = self.read_request()
                except OSError:
                    return
                if head is None:
                    return
                with server.lock:
                    server.requests += 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    for line in head.split("\r\n"):
                        if line.lower().startswith("authorization:"):
                            server.authorizations.append(line.split(":", 1)[1].strip())
                try:
                    server.respond(self.request, head)
                except OSError:
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def read_request(self) -> str | None:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return None
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                text = head.decode("latin-1")
                length = 0
                for line in text.split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                while len(rest) < length:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
                return text

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            block_on_close = False

        self.tcp = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.tcp.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.tcp.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # ------------------------------------------------------------------------------------------ answers

    def respond(self, sock: socket.socket, head: str) -> None:
        mode = self.mode
        if mode == "silent":
            while not self.stop.wait(0.1):
                pass
            return
        if mode == "ok" or head.startswith("GET /v1/models"):
            body = (json.dumps({"object": "list", "data": [{"id": "alpha", "object": "model"}]})
                    if head.startswith("GET") else json.dumps(GOOD_BODY))
            return self.send(sock, 200, body.encode())
        if mode == "trickle":
            body = json.dumps(GOOD_BODY).encode()
            sock.sendall(self.headers(200, len(body)))
            for byte in body:
                if self.stop.wait(0.2):
                    return
                sock.sendall(bytes([byte]))
            return
        if mode == "sse":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            while not self.stop.is_set():
                event = b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n'
                sock.sendall(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                time.sleep(0.01)
            return
        if mode == "huge":
            size = 64 * 1024 * 1024
            sock.sendall(self.headers(200, size))
            block = b" " * 65536
            for _ in range(size // len(block)):
                if self.stop.is_set():
                    return
                sock.sendall(block)
            return
        if mode == "huge_chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            block = b" " * 65536
            while not self.stop.is_set():
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            return
        if mode == "garbage":
            return sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        if mode == "hangup":
            return None
        if mode == "short_body":
            return sock.sendall(self.headers(200, 100) + b'{"choices"')
        if mode == "reply_auth":
            mode = "reply:" + (self.authorizations[-1] if self.authorizations else "")
        if mode.startswith("then_silent:"):
            _, count, text = mode.split(":", 2)
            with self.lock:
                number = self.requests
            if number > int(count):
                while not self.stop.wait(0.1):
                    pass
                return
            mode = "reply:" + text
        if mode.startswith("reply:"):
            time.sleep(self.delay)
            body = dict(GOOD_BODY, choices=[{"index": 0, "message": {"role": "assistant", "content": mode[6:]}}])
            return self.send(sock, 200, json.dumps(body).encode())
        if mode.startswith("json:"):
            return self.send(sock, 200, mode[5:].encode())
        if mode == "echo401":
            sent = self.authorizations[-1] if self.authorizations else ""
            body = json.dumps({"error": {"message": f"Incorrect API key provided: {sent}"}}).encode()
            return self.send(sock, 401, body)
        raise ValueError(f"unknown mode {mode}")

    @staticmethod
    def headers(status: int, length: int) -> bytes:
        reason = {200: "OK", 401: "Unauthorized"}[status]
        return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
                "Connection: close\r\n\r\n").encode()

    def send(self, sock: socket.socket, status: int, body: bytes) -> None:
        sock.sendall(self.headers(status, len(body)) + body)

    def __enter__(self) -> "MisbehavingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.tcp.shutdown()
        self.tcp.server_close()
        self.thread.join(timeout=5)
