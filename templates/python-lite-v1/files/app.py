# A berth python-lite-v1 app: an HTTP server on $PORT that answers with a greeting.
# Edit this file in your workspace, then deploy (bump `restart` in the manifest) to serve it.
# Dependencies come from the template's shared, read-only install at /deps (on PYTHONPATH).
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import six

PORT = int(os.environ.get("PORT", "8000"))
GREETING = os.environ.get("GREETING", "hello")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{GREETING} from python-lite-v1 (six {six.__version__})\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # no line per request (health checks poll)


# Exit promptly on `docker stop` so deploys are quick.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
print(f"listening on {PORT}", flush=True)
server.serve_forever()
