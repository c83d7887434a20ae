"""A local HTTP stand-in for the Hugging Face Hub (the real Hub cannot be reached from tests).

It implements just the endpoints ``huggingface_hub`` uses to create a repo, pre-upload and commit files as
regular (non-LFS) blobs, records every request, and can answer the first N commits with HTTP 429.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubStandIn:
    def __init__(self, fail_commits_with_429: int = 0, fail_all_with: tuple[int, str] | None = None):
        """``fail_all_with=(status, body)``: every POST answers that (a 5xx with an echoing body, say)."""
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.commits = 0
        self.validated: list[str] = []
        self.fail_429 = fail_commits_with_429
        self.fail_all = fail_all_with
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, code, obj, headers=None):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                hub.requests.append(("POST", self.path, dict(self.headers)))
                if hub.fail_all:
                    return self._send(hub.fail_all[0], {"error": hub.fail_all[1]})
                if self.path.startswith("/api/repos/create"):
                    name = json.loads(raw)
                    repo = f"{name.get('organization') or 'user'}/{name['name']}"
                    return self._send(200, {"url": f"http://{self.headers['Host']}/datasets/{repo}", "name": repo})
                if self.path.startswith("/api/validate-yaml"):  # the Hub checks a card's YAML header
                    body = json.loads(raw)
                    hub.validated.append(body.get("content", ""))
                    return self._send(200, {"warnings": []})
                if "/preupload/" in self.path:
                    files = json.loads(raw)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False, "oid": None} for f in files]})
                if "/commit/" in self.path:
                    if hub.fail_429 > 0:
                        hub.fail_429 -= 1
                        return self._send(429, {"error": "rate limited"}, {"Retry-After": "0"})
                    for line in raw.splitlines():
                        item = json.loads(line)
                        if item.get("key") == "file":
                            v = item["value"]
                            hub.files[v["path"]] = base64.b64decode(v["content"])
                    hub.commits += 1
                    repo = self.path.split("/api/datasets/", 1)[1].split("/commit/", 1)[0]
                    oid = f"{hub.commits:040x}"
                    return self._send(200, {"commitUrl": f"http://{self.headers['Host']}/datasets/{repo}/commit/{oid}",
                                            "commitOid": oid, "pullRequestUrl": None})
                return self._send(404, {"error": f"stand-in has no {self.path}"})

            def do_GET(self):  # noqa: N802
                hub.requests.append(("GET", self.path, dict(self.headers)))
                return self._send(404, {"error": f"stand-in has no {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
