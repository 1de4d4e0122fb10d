# Measures fresh-connection failures through Caddy while its admin API changes only one
# route's upstreams (PATCH .../routes/0/handle/0/upstreams), against no changes at all.
import http.client, http.server, json, os, socket, subprocess, sys, threading, time, tempfile, urllib.request
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = b"ok\n"; self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 512
backs = []
for _ in range(2):
    srv = S(("127.0.0.1", 0), H); backs.append(srv.server_address[1]); threading.Thread(target=srv.serve_forever, daemon=True).start()
admin, port = free(), free()
d = tempfile.mkdtemp()
cfg = {"admin": {"listen": f"127.0.0.1:{admin}"}, "apps": {"http": {"servers": {"s": {"listen": [f":{port}"], "automatic_https": {"disable": True},
  "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{backs[0]}"}]}]}]}}}}}
open(f"{d}/c.json", "w").write(json.dumps(cfg))
caddy = subprocess.Popen(["caddy", "run", "--config", f"{d}/c.json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HOME": d})
time.sleep(2)
def patch(i):
    body = json.dumps([{"dial": f"127.0.0.1:{backs[i % 2]}"}]).encode()
    r = urllib.request.Request(f"http://127.0.0.1:{admin}/config/apps/http/servers/s/routes/0/handle/0/upstreams", data=body, method="PATCH", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(r).read()
def load(secs, changes):
    stop = time.time() + secs; n = [0]; errs = []; lock = threading.Lock()
    def worker():
        while time.time() < stop:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10); c.request("GET", "/"); r = c.getresponse(); r.read(); c.close()
                ok = r.status == 200
                e = None if ok else f"status {r.status}"
            except Exception as x:
                e = type(x).__name__
            with lock:
                n[0] += 1
                if e: errs.append(e)
    ts = [threading.Thread(target=worker) for _ in range(16)]
    [t.start() for t in ts]
    loads = 0
    while changes and time.time() < stop:
        patch(loads); loads += 1; time.sleep(0.2)
    [t.join() for t in ts]
    return n[0], errs, loads
try:
    for mode in sys.argv[1:]:
        n, errs, loads = load(int(os.environ.get("SECS", "30")), mode == "patch")
        from collections import Counter
        print(f"{mode}: {n} requests, {len(errs)} failed {dict(Counter(errs))}, {loads} admin PATCHes", flush=True)
finally:
    caddy.terminate()
