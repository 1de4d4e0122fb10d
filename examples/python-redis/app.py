# examples/python-redis.sh's app: a python-lite-v1 app that counts its visits in a Redis.
# It reaches the Redis by its app name on the user's network (REDIS_HOST, set in the manifest's
# [env]) with the password berth generated for it and copied into this app's [secrets]
# (REDIS_PASSWORD): docs/guides/templates-and-values.md. Standard library only: it speaks
# Redis's protocol (RESP) over a socket itself.
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8000"))


def command(sock, *args):
    """Sends one command and reads a one-line answer (+OK, :42, -ERR ...)."""
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        data = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    sock.sendall(out)
    line = sock.makefile("rb").readline().decode().rstrip("\r\n")
    if line.startswith("-"):
        raise RuntimeError(line[1:])
    return line[1:]


def visits():
    host = os.environ.get("REDIS_HOST", "cache")
    with socket.create_connection((host, 6379), timeout=2) as sock:
        command(sock, "AUTH", os.environ.get("REDIS_PASSWORD", ""))
        return f"visit {command(sock, 'INCR', 'visits')}, counted by redis at {host}:6379"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            text = visits()
        except Exception as e:  # answered, so a deploy's health check sees the app is up
            text = f"redis not reachable: {e}"
        body = f"hello from python-lite-v1: {text}\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
