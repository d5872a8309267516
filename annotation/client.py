"""A small Label Studio REST client: token from the environment, bounded retries with backoff on 5xx and
timeouts, and one-line errors (``token rejected: set VAR``, ``not reachable``) that never carry the token.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx

from annotation.settings import LabelStudioSettings
from iterate.core.errors import IterateError


class StudioError(IterateError):
    pass


def token_from_env(var: str) -> str:
    tok = os.environ.get(var, "")
    if not tok:
        raise StudioError(
            f"no Label Studio token: set the environment variable {var} (the manifest's label_studio.token_env)"
        )
    return tok


class Studio:
    """REST calls against one Label Studio server."""

    def __init__(self, url: str, token_env: str, *, retries: int = 4, timeout: float = 30.0, backoff: float = 0.5):
        self.url = url.rstrip("/")
        self.token_env = token_env
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Token {token_from_env(token_env)}"}
        )

    @classmethod
    def from_settings(cls, ls: LabelStudioSettings) -> Studio:
        return cls(ls.url, ls.token_env)

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:  # never show the token
        return f"Studio({self.url!r}, token from ${self.token_env})"

    def request(self, method: str, path: str, **kw) -> Any:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                r = self._http.request(method, path, **kw)
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError) as e:
                if attempt == self.retries:
                    raise StudioError(
                        f"Label Studio at {self.url} is not reachable ({type(e).__name__}); "
                        "start it with `iterate studio start` or fix label_studio.url"
                    ) from None
            except httpx.TimeoutException:
                if attempt == self.retries:
                    raise StudioError(f"Label Studio at {self.url} timed out on {method} {path}") from None
            else:
                if r.status_code == 401:
                    raise StudioError(f"token rejected by {self.url}: set {self.token_env} to a valid token")
                if r.status_code == 403:
                    raise StudioError(f"{self.url} refused {method} {path} (403): the token's user lacks access")
                if r.status_code < 500:
                    if r.status_code >= 400:
                        raise StudioError(f"Label Studio {method} {path} failed ({r.status_code}): {r.text[:300]}")
                    if not r.content:
                        return None
                    try:
                        return r.json()
                    except json.JSONDecodeError:
                        return r.content
                if attempt == self.retries:
                    raise StudioError(
                        f"Label Studio {method} {path} failed ({r.status_code}) after {attempt + 1} tries"
                    )
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    # -- endpoints ---------------------------------------------------------------------------------
    def health(self) -> bool:
        try:
            r = httpx.get(f"{self.url}/health", timeout=3)
            return r.status_code == 200 and r.json().get("status") == "UP"
        except (httpx.HTTPError, ValueError):
            return False

    def projects(self) -> list[dict]:
        out, page = [], 1
        while True:
            d = self.request("GET", "/api/projects/", params={"page": page, "page_size": 100})
            items = d["results"] if isinstance(d, dict) else d
            out += items
            if not isinstance(d, dict) or not d.get("next"):
                return out
            page += 1

    def project(self, pid: int) -> dict | None:
        try:
            return self.request("GET", f"/api/projects/{pid}/")
        except StudioError as e:
            if "(404)" in str(e):
                return None
            raise

    def create_project(self, title: str, label_config: str) -> dict:
        return self.request("POST", "/api/projects/", json={"title": title, "label_config": label_config})

    def update_project(self, pid: int, **fields) -> dict:
        return self.request("PATCH", f"/api/projects/{pid}/", json=fields)

    def local_storages(self, pid: int) -> list[dict]:
        return self.request("GET", "/api/storages/localfiles/", params={"project": pid}) or []

    def add_local_storage(self, pid: int, path: str) -> dict:
        return self.request(
            "POST",
            "/api/storages/localfiles/",
            json={
                "project": pid,
                "path": path,
                "title": "iterate frames",
                "use_blob_urls": False,
                "recursive_scan": True,
            },
        )

    def import_tasks(self, pid: int, tasks: list[dict]) -> list[int]:
        d = self.request("POST", f"/api/projects/{pid}/import", params={"return_task_ids": "true"}, json=tasks)
        return list(d.get("task_ids") or [])

    def tasks(self, pid: int, *, updated_after: str | None = None, fields: str = "all") -> list[dict]:
        """All tasks of a project (paged), optionally only those updated after an ISO timestamp."""
        query: dict = {}
        if updated_after:
            query = {
                "filters": {
                    "conjunction": "and",
                    "items": [
                        {
                            "filter": "filter:tasks:updated_at",
                            "operator": "greater",
                            "type": "Datetime",
                            "value": updated_after,
                        }
                    ],
                }
            }
        out, page = [], 1
        while True:
            params = {"project": pid, "page": page, "page_size": 1000, "fields": fields}
            if query:
                params["query"] = json.dumps(query)
            try:
                d = self.request("GET", "/api/tasks/", params=params)
            except StudioError as e:
                if "(404)" in str(e):  # past the last page
                    return out
                raise
            items = d.get("tasks", []) if isinstance(d, dict) else d
            out += items
            total = d.get("total", len(out)) if isinstance(d, dict) else len(out)
            if not items or len(out) >= total:
                return out
            page += 1

    def export(self, pid: int, ids: list[int]) -> list[dict]:
        """Full JSON export (keeps region ids, so per-region choices stay attached to their joint)."""
        if not ids:
            return []
        out = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            d = self.request(
                "GET",
                f"/api/projects/{pid}/export",
                params=[("exportType", "JSON"), ("download_all_tasks", "true")] + [("ids[]", str(t)) for t in chunk],
            )
            if isinstance(d, (bytes, bytearray)):
                d = json.loads(d)
            out += d
        return out

    def export_all(self, pid: int) -> list[dict]:
        """Full JSON export of every task of the project, in one request."""
        d = self.request(
            "GET", f"/api/projects/{pid}/export", params={"exportType": "JSON", "download_all_tasks": "true"}
        )
        return json.loads(d) if isinstance(d, (bytes, bytearray)) else (d or [])

    def create_annotation(
        self, task_id: int, result: list[dict], *, was_cancelled: bool = False, lead_time: float = 1.0
    ) -> dict:
        return self.request(
            "POST",
            f"/api/tasks/{task_id}/annotations/",
            json={"result": result, "was_cancelled": was_cancelled, "lead_time": lead_time},
        )

    def update_annotation(self, annotation_id: int, result: list[dict]) -> dict:
        return self.request("PATCH", f"/api/annotations/{annotation_id}/", json={"result": result})
