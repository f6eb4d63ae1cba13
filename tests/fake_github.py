"""A small GitHub Enterprise REST server on 127.0.0.1 for the PR-report tests.

Real HTTP, GitHub-shaped JSON: the endpoints kirinuki.publish.pr_report uses (repository, issue,
issue comments with Link-header pagination, edit a comment, commit statuses) under /api/v3,
with token authentication. State lives in memory and every request is recorded.
"""
from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import localhttp

NOW = "2026-01-01T00:00:00Z"


class FakeGitHub:
    def __init__(self, owner: str, repo: str, pr: int, token: str, page_size: int = 100):
        self.owner, self.repo, self.pr, self.token, self.page_size = owner, repo, pr, token, page_size
        self.comments: list[dict] = []  # {"id", "body", "login"}
        self.statuses: list[dict] = []  # {"sha", "state", "description", "context", "target_url"}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.auth_headers: list[str] = []
        self._next_id = 1000
        handler = type("Handler", (_Handler,), {"gh": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.api = f"{self.url}/api/v3"

    def __enter__(self):
        localhttp.start(self.server)
        return self

    def __exit__(self, *exc):
        localhttp.stop(self.server)

    def add_comment(self, body: str, login: str = "someone") -> dict:
        self._next_id += 1
        comment = {"id": self._next_id, "body": body, "login": login}
        self.comments.append(comment)
        return comment

    # --- GitHub-shaped JSON -------------------------------------------------------------

    def user_json(self, login: str) -> dict:
        u = f"{self.api}/users/{login}"
        return {"login": login, "id": sum(map(ord, login)), "avatar_url": f"{self.url}/avatars/{login}",
                "gravatar_id": "", "url": u, "html_url": f"{self.url}/{login}", "followers_url": u + "/followers",
                "following_url": u + "/following{/other_user}", "gists_url": u + "/gists{/gist_id}",
                "starred_url": u + "/starred{/owner}{/repo}", "subscriptions_url": u + "/subscriptions",
                "organizations_url": u + "/orgs", "repos_url": u + "/repos", "events_url": u + "/events{/privacy}",
                "received_events_url": u + "/received_events", "type": "User", "site_admin": False}

    def repo_json(self) -> dict:
        r = f"{self.api}/repos/{self.owner}/{self.repo}"
        templated = {  # name -> URL suffix, as GitHub lists them
            "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}", "contributors_url": "/contributors",
            "deployments_url": "/deployments", "downloads_url": "/downloads", "events_url": "/events",
            "forks_url": "/forks", "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}", "hooks_url": "/hooks", "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}", "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}", "languages_url": "/languages", "merges_url": "/merges",
            "milestones_url": "/milestones{/number}", "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}", "releases_url": "/releases{/id}", "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}", "subscribers_url": "/subscribers", "subscription_url": "/subscription",
            "tags_url": "/tags", "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
        }
        full = f"{self.owner}/{self.repo}"
        return {"id": 1, "name": self.repo, "full_name": full, "owner": self.user_json(self.owner),
                "private": False, "fork": False, "description": "", "url": r, "html_url": f"{self.url}/{full}",
                **{k: r + v for k, v in templated.items()},
                "archived": False, "clone_url": f"{self.url}/{full}.git", "git_url": f"git://x/{full}.git",
                "ssh_url": f"git@x:{full}.git", "svn_url": f"{self.url}/{full}", "mirror_url": None,
                "created_at": NOW, "updated_at": NOW, "pushed_at": NOW, "default_branch": "main",
                "forks_count": 0, "network_count": 0, "open_issues_count": 1, "size": 1, "stargazers_count": 0,
                "subscribers_count": 0, "watchers_count": 0, "has_downloads": True, "has_issues": True,
                "has_pages": False, "has_projects": False, "has_wiki": False, "homepage": None, "language": "Python"}

    def issue_json(self) -> dict:
        i = f"{self.api}/repos/{self.owner}/{self.repo}/issues/{self.pr}"
        return {"id": 7, "number": self.pr, "title": "a pull request", "body": "", "body_html": "", "body_text": "",
                "state": "open", "locked": False, "user": self.user_json("author"), "assignee": None,
                "assignees": [], "labels": [], "milestone": None, "comments": len(self.comments),
                "closed_at": None, "closed_by": None, "created_at": NOW, "updated_at": NOW, "url": i,
                "html_url": f"{self.url}/{self.owner}/{self.repo}/pull/{self.pr}", "comments_url": i + "/comments",
                "events_url": i + "/events", "labels_url": i + "/labels{/name}",
                "pull_request": {"url": f"{self.api}/repos/{self.owner}/{self.repo}/pulls/{self.pr}"}}

    def comment_json(self, c: dict) -> dict:
        base = f"{self.api}/repos/{self.owner}/{self.repo}/issues"
        return {"id": c["id"], "url": f"{base}/comments/{c['id']}", "body": c["body"], "body_html": "",
                "body_text": c["body"], "user": self.user_json(c["login"]), "author_association": "NONE",
                "created_at": NOW, "updated_at": NOW, "issue_url": f"{base}/{self.pr}",
                "html_url": f"{self.url}/{self.owner}/{self.repo}/pull/{self.pr}#issuecomment-{c['id']}"}


class _Handler(BaseHTTPRequestHandler):
    gh: FakeGitHub

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, code: int, payload=None, headers: dict | None = None):
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

    def _route(self, method: str):
        gh = self.gh
        url = urlparse(self.path)
        gh.requests.append((method, url.path))
        gh.auth_headers.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != f"token {gh.token}":
            return self._send(401, {"message": "Bad credentials"})
        prefix = f"/api/v3/repos/{gh.owner}/{gh.repo}"
        if not url.path.startswith(prefix):
            return self._send(404, {"message": "Not Found"})
        path = url.path[len(prefix):]
        if method == "GET" and path == "":
            return self._send(200, gh.repo_json())
        if method == "GET" and path == f"/issues/{gh.pr}":
            return self._send(200, gh.issue_json())
        if path == f"/issues/{gh.pr}/comments":
            if method == "POST":
                return self._send(201, gh.comment_json(gh.add_comment(self._body()["body"], login="qc-bot")))
            if method == "GET":
                return self._page(url)
        m = re.fullmatch(r"/issues/comments/(\d+)", path)
        if m and method == "PATCH":
            comment = next((c for c in gh.comments if c["id"] == int(m.group(1))), None)
            if comment is None:
                return self._send(404, {"message": "Not Found"})
            comment["body"] = self._body()["body"]
            return self._send(200, gh.comment_json(comment))
        m = re.fullmatch(r"/statuses/([0-9a-f]{7,40})", path)
        if m and method == "POST":
            data = self._body()
            if data.get("state") not in ("error", "failure", "pending", "success"):
                return self._send(422, {"message": "Validation Failed"})
            gh.statuses.append({"sha": m.group(1), **data})
            return self._send(201, {"id": len(gh.statuses), "url": f"{gh.url}{url.path}", "state": data["state"],
                                    "description": data.get("description"), "target_url": data.get("target_url"),
                                    "context": data.get("context", "default"), "created_at": NOW,
                                    "updated_at": NOW, "creator": gh.user_json("qc-bot")})
        return self._send(404, {"message": "Not Found"})

    def _page(self, url):
        """One page of comments; a Link header names the next, as GitHub paginates."""
        gh = self.gh
        query = parse_qs(url.query)
        per_page = min(int(query.get("per_page", ["30"])[0]), gh.page_size)
        page = int(query.get("page", ["1"])[0])
        chunk = gh.comments[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(gh.comments):
            headers["Link"] = f'<{gh.url}{url.path}?per_page={per_page}&page={page + 1}>; rel="next"'
        return self._send(200, [gh.comment_json(c) for c in chunk], headers)

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PATCH(self):
        self._route("PATCH")
