"""A small REST job service on 127.0.0.1 for the connector author's loop (issue 29).

Jobs count the words of a text, taking `seconds`; every call needs the bearer token.

- POST /jobs {"text", "seconds", "label"} -> 201 {"id"}
- GET /jobs/ID -> {"state": "running" | "succeeded" | "cancelled", "words", "score"}
- GET /jobs/ID/logs?after=N -> {"lines": [...], "next": M or null (the job ended)}
- DELETE /jobs/ID -> 204, also for a finished or unknown job

`calls` records (method, path, authorised) so a test sees which calls carried the token.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlparse


class JobService:
    """The service's state; `serve()` starts it on an ephemeral loopback port."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.server: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def serve(self) -> JobService:
        service = self

        class Handler(_Handler):
            owner = service

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def state(self, job: dict[str, Any]) -> str:
        if job["cancelled"]:
            return "cancelled"
        return "succeeded" if time.time() >= job["started"] + job["seconds"] else "running"

    def lines(self, job: dict[str, Any]) -> list[str]:
        """One line per word, written evenly over the job's run."""
        words = job["text"].split()
        if self.state(job) != "running":
            shown = len(words)
        else:
            share = (time.time() - job["started"]) / max(job["seconds"], 1e-9)
            shown = int(len(words) * share)
        return [f"counted {word!r}" for word in words[:shown]] + (
            [f"done: {len(words)} words"] if self.state(job) == "succeeded" else [])


class _Handler(BaseHTTPRequestHandler):
    owner: JobService

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _authorised(self) -> bool:
        ok = self.headers.get("Authorization") == f"Bearer {self.owner.token}"
        with self.owner.lock:
            self.owner.calls.append((self.command, urlparse(self.path).path, ok))
        if not ok:
            self._send(401, {"error": "bad or missing token"})
        return ok

    def _send(self, status: int, body: Optional[dict[str, Any]] = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _job(self, job_id: str) -> Optional[dict[str, Any]]:
        return self.owner.jobs.get(job_id)

    def do_POST(self) -> None:
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.owner.lock:
            job_id = f"j{len(self.owner.jobs) + 1}"
            self.owner.jobs[job_id] = {"text": str(body.get("text", "")),
                                       "seconds": float(body.get("seconds", 0)),
                                       "label": body.get("label"), "started": time.time(),
                                       "cancelled": False}
        self._send(201, {"id": job_id})

    def do_GET(self) -> None:
        if not self._authorised():
            return
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        job = self._job(parts[1]) if len(parts) >= 2 and parts[0] == "jobs" else None
        if job is None:
            self._send(404, {"error": "no such job"})
            return
        if len(parts) == 3 and parts[2] == "logs":
            after = int(parse_qs(url.query).get("after", ["0"])[0])
            lines = self.owner.lines(job)
            page = lines[after:after + 2]
            ended = self.owner.state(job) != "running" and after + len(page) >= len(lines)
            self._send(200, {"lines": page, "next": None if ended else after + len(page)})
            return
        words = len(job["text"].split())
        self._send(200, {"state": self.owner.state(job), "words": words,
                         "score": words // 2})  # an int where the task declares a float

    def do_DELETE(self) -> None:
        if not self._authorised():
            return
        job = self._job(self.path.strip("/").split("/")[-1])
        if job is not None:
            job["cancelled"] = True
        self._send(204)
