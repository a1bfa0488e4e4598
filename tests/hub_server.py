"""A tiny in-process fake of the Hugging Face Hub HTTP API, for offline upload/download tests.

It implements only what ``huggingface_hub`` 2.x sends for ``create_repo``, ``create_branch``,
``upload_folder`` (preupload + NDJSON commit; every file is a regular, non-LFS upload, so no
Xet/LFS transfer is ever needed) and ``snapshot_download`` (repo info, tree, resolve).
Every request is recorded (method, path, headers, body) so tests can check what left the client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

__all__ = ["FakeHub", "Repo", "Request"]

USER = "tester"


@dataclass
class Request:
    method: str
    path: str  # URL path with query string
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})
    commit_messages: list[str] = field(default_factory=list)

    def files(self, branch: str = "main") -> dict[str, bytes]:
        return self.branches[branch]


def _git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub:
    """Start with ``FakeHub(token=...)`` then ``.start()``; ``.url`` is the endpoint; ``.stop()`` at teardown.

    ``token``: when set, every request must carry ``Authorization: Bearer <token>`` (else 401).
    ``fail``: ``{(METHOD, regex on the path): status}``: answer that status instead (error injection).
    ``echo``: like ``fail``, but the error message repeats the request's ``Authorization`` header (as
    some proxies and servers do).
    ``hang``: ``{(METHOD, regex on the path)}``: never answer those requests (until :meth:`stop`).
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self.fail: dict[tuple[str, str], int] = {}
        self.echo: dict[tuple[str, str], int] = {}
        self.hang: set[tuple[str, str]] = set()
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._commits = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ helpers for tests
    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def _new_commit(self) -> str:
        self._commits += 1
        return hashlib.sha1(f"commit {self._commits}".encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeHub

    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass

    # ------------------------------------------------------------------ plumbing
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload=None, headers: dict | None = None, body: bytes | None = None,
              head: bool = False) -> None:
        if body is None:
            body = json.dumps(payload if payload is not None else {}).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None, head: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers=headers, head=head)

    def _handle(self, method: str) -> None:
        body = self._read_body() if method in ("POST", "PUT") else b""
        fake = self.fake
        with fake._lock:
            fake.requests.append(Request(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        path = unquote(urlsplit(self.path).path)
        query = parse_qs(urlsplit(self.path).query)
        head = method == "HEAD"
        for hang_method, pattern in fake.hang:
            if hang_method == method and re.search(pattern, path):
                fake.released.wait()
                self.close_connection = True
                return None
        for (fail_method, pattern), status in fake.fail.items():
            if fail_method == method and re.search(pattern, path):
                return self._error(status, f"Injected failure {status}", head=head)
        for (echo_method, pattern), status in fake.echo.items():
            if echo_method == method and re.search(pattern, path):
                sent = self.headers.get("Authorization", "")
                return self._error(status, f"Bad request (Authorization: {sent})", head=head)
        if fake.token is not None and self.headers.get("Authorization") != f"Bearer {fake.token}":
            return self._error(401, "Invalid credentials in Authorization header", head=head)
        with fake._lock:
            return self._route(method, path, query, body, head)

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    # ------------------------------------------------------------------ routes
    def _route(self, method: str, path: str, query: dict, body: bytes, head: bool) -> None:
        fake = self.fake
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            content = json.loads(body)["content"]
            match = re.match(r"^---\n(.*?)\n---", content, re.S)
            try:
                yaml.safe_load(match.group(1) if match else "")
            except yaml.YAMLError as error:
                return self._send(400, {"errors": [{"message": str(error)}], "warnings": []})
            return self._send(200, {"errors": [], "warnings": []})
        if method == "GET" and path == "/api/whoami-v2":
            return self._send(200, {"type": "user", "name": USER})

        api = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/(preupload|commit|branch|revision|tree|refs)"
                           r"(?:/([^/]+))?(/.*)?", path)
        if api:
            repo_type, repo_id, action, revision, rest = api.groups()
            repo = fake.repos.get((repo_type[:-1], repo_id))
            if repo is None:
                return self._error(404, "Repository not found", "RepoNotFound", head=head)
            if action == "branch":
                return self._create_branch(repo, revision, json.loads(body or b"{}"))
            if action == "refs":
                branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                            for name, sha in repo.heads.items()]
                return self._send(200, {"branches": branches, "converts": [], "tags": []})
            revision = revision or "main"
            branch = self._branch_of(repo, revision)
            if branch is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", head=head)
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._send(200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                    for f in files]})
            if action == "commit":
                return self._commit(repo, branch, body)
            if action == "revision":
                return self._send(200, {
                    "id": repo.repo_id, "sha": repo.heads[branch], "private": repo.private,
                    "siblings": [{"rfilename": name} for name in sorted(repo.files(branch))],
                })
            if action == "tree":
                prefix = (rest or "").strip("/")
                entries = [{"type": "file", "path": name, "size": len(content), "oid": _git_blob_sha(content)}
                           for name, content in sorted(repo.files(branch).items())
                           if not prefix or name.startswith(prefix + "/")]
                return self._send(200, entries)

        resolve = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve and method in ("GET", "HEAD"):
            prefix, repo_id, revision, filename = resolve.groups()
            repo_type = prefix[:-2] if prefix else "model"
            repo = fake.repos.get((repo_type, repo_id))
            if repo is None:
                return self._error(404, "Repository not found", "RepoNotFound", head=head)
            branch = self._branch_of(repo, revision)
            if branch is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", head=head)
            content = repo.files(branch).get(filename)
            if content is None:
                return self._error(404, "Entry not found", "EntryNotFound", head=head)
            headers = {"X-Repo-Commit": repo.heads[branch], "ETag": f'"{_git_blob_sha(content)}"',
                       "Content-Type": "application/octet-stream"}
            return self._send(200, headers=headers, body=content, head=head)
        return self._error(404, f"Not implemented by the fake hub: {method} {path}", head=head)

    def _branch_of(self, repo: Repo, revision: str) -> str | None:
        if revision in repo.branches:
            return revision
        for name, sha in repo.heads.items():
            if sha == revision:
                return name
        return None

    def _create_repo(self, payload: dict) -> None:
        fake = self.fake
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{fake.url}/{prefix}{repo_id}"
        if (repo_type, repo_id) in fake.repos:
            return self._send(409, {"error": f"You already created this {repo_type} repo", "url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        fake.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, private)
        return self._send(200, {"url": url, "name": repo_id})

    def _create_branch(self, repo: Repo, branch: str, payload: dict) -> None:
        if branch in repo.branches:
            return self._error(409, f"Reference already exists: refs/heads/{branch}")
        start = payload.get("startingPoint") or "main"
        source = self._branch_of(repo, start)
        if source is None:
            return self._error(404, f"Invalid rev id: {start}", "RevisionNotFound")
        repo.branches[branch] = dict(repo.branches[source])
        repo.heads[branch] = repo.heads[source]
        return self._send(200, {})

    def _commit(self, repo: Repo, branch: str, body: bytes) -> None:
        files = dict(repo.files(branch))
        message = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
            elif key == "file":
                if value.get("encoding") != "base64":
                    return self._error(400, "only base64 file content is supported")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {name: data for name, data in files.items() if not name.startswith(value["path"].rstrip("/") + "/")}
            else:
                return self._error(400, f"the fake hub does not support {key!r} operations (LFS)")
        sha = self.fake._new_commit()
        repo.branches[branch] = files
        repo.heads[branch] = sha
        repo.commit_messages.append(message)
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return self._send(200, {"commitUrl": f"{self.fake.url}/{prefix}{repo.repo_id}/commit/{sha}",
                                "commitOid": sha, "pullRequestUrl": None})
