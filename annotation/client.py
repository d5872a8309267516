"""A small Label Studio REST client: token from the environment, bounded retries with backoff on 5xx and
timeouts, and one-line errors (``token rejected: set VAR``, ``not reachable``, ``answered HTML``) that never
carry the token. Every call expects JSON: an HTML page (a login proxy in front of the server), a redirect or
JSON of the wrong shape is a :class:`StudioError` naming ``label_studio.url``.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import httpx

from annotation.settings import LabelStudioSettings
from iterate.core.errors import IterateError


class StudioError(IterateError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status  # the HTTP status when the server answered one


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_html(r: httpx.Response) -> bool:
    ctype = r.headers.get("content-type", "")
    return "html" in ctype or r.text.lstrip()[:15].lower().startswith(("<!doctype html", "<html"))


def _gist(r: httpx.Response) -> str:
    """A short, one-line account of a response body: an HTML page's title, a JSON error's detail, else its start."""
    if _is_html(r):
        m = re.search(r"<title[^>]*>(.*?)</title>", r.text, re.I | re.S)
        return f"an HTML page{f' titled {_one_line(m.group(1), 80)!r}' if m else ''}"
    try:
        d = r.json()
    except ValueError:
        return _one_line(r.text)
    return _one_line(str(d.get("detail") or d) if isinstance(d, dict) else str(d))


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

    def request(self, method: str, path: str, *, expect: type | tuple[type, ...] | None = None, **kw) -> Any:
        """One API call → its JSON (None for an empty body), of type ``expect`` when given."""
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
                if r.status_code < 500:
                    return self._answer(r, method, path, expect)
                if attempt == self.retries:
                    raise StudioError(
                        f"Label Studio {method} {path} failed ({r.status_code}) after {attempt + 1} tries",
                        r.status_code,
                    )
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def _answer(self, r: httpx.Response, method: str, path: str, expect) -> Any:
        """A response under 500 → its JSON, or a one-line StudioError."""
        self._check_status(r, method, path)
        d = self._json(r, method, path)
        if expect is not None and not isinstance(d, expect):
            raise StudioError(
                f"label_studio.url {self.url} answered {method} {path} with JSON {type(d).__name__}, "
                f"not what the Label Studio API sends: {_one_line(str(d), 80)}"
            )
        return d

    def _check_status(self, r: httpx.Response, method: str, path: str) -> None:
        code = r.status_code
        if code == 401:
            raise StudioError(f"token rejected by {self.url}: set {self.token_env} to a valid token", code)
        if code == 403:
            raise StudioError(f"{self.url} refused {method} {path} (403): the token's user lacks access", code)
        if 300 <= code < 400:
            raise StudioError(
                f"label_studio.url {self.url} redirected {method} {path} to {r.headers.get('location', '?')} "
                f"({code}), not the Label Studio API: a login page or proxy in front of it?",
                code,
            )
        if code >= 400:
            raise StudioError(f"Label Studio {method} {path} failed ({code}): {_gist(r)}", code)

    def _json(self, r: httpx.Response, method: str, path: str) -> Any:
        if not r.content:
            return None
        if _is_html(r):
            raise StudioError(
                f"label_studio.url {self.url} answered HTML, not the Label Studio API: {method} {path} gave {_gist(r)}"
                " (a login page or proxy in front of it?)"
            )
        try:
            return r.json()
        except ValueError:
            raise StudioError(
                f"label_studio.url {self.url} answered {method} {path} with something not JSON, "
                f"not the Label Studio API: {_gist(r)}"
            ) from None

    # -- endpoints ---------------------------------------------------------------------------------
    def health(self) -> bool:
        try:
            r = httpx.get(f"{self.url}/health", timeout=3)
            d = r.json() if r.status_code == 200 else None
            return isinstance(d, dict) and d.get("status") == "UP"
        except (httpx.HTTPError, ValueError):
            return False

    def projects(self) -> list[dict]:
        out, page = [], 1
        while True:
            d = self.request("GET", "/api/projects/", params={"page": page, "page_size": 100}, expect=(dict, list))
            items = d.get("results") if isinstance(d, dict) else d
            out += self._items(items, "GET /api/projects/")
            if not isinstance(d, dict) or not d.get("next"):
                return out
            page += 1

    def _items(self, items, what: str) -> list[dict]:
        if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
            raise StudioError(
                f"label_studio.url {self.url} answered {what} with {_one_line(str(items), 80)}, "
                "not the list of objects the Label Studio API sends"
            )
        return items

    def project(self, pid: int) -> dict | None:
        """The project, or None when it answers 404 (deleted)."""
        return self._or_none("GET", f"/api/projects/{pid}/")

    def task(self, tid: int) -> dict | None:
        """The task, or None when it answers 404 (deleted)."""
        return self._or_none("GET", f"/api/tasks/{tid}/")

    def _or_none(self, method: str, path: str) -> dict | None:
        try:
            return self.request(method, path, expect=dict)
        except StudioError as e:
            if e.status == 404:
                return None
            raise

    def create_project(self, title: str, label_config: str, **fields) -> dict:
        """A new project; ``fields`` are further project settings (``expert_instruction``, ``show_instruction``)."""
        body = {"title": title, "label_config": label_config, **fields}
        return self.request("POST", "/api/projects/", json=body, expect=dict)

    def update_project(self, pid: int, **fields) -> dict:
        return self.request("PATCH", f"/api/projects/{pid}/", json=fields, expect=dict)

    def local_storages(self, pid: int) -> list[dict]:
        d = self.request("GET", "/api/storages/localfiles/", params={"project": pid}, expect=(list, type(None)))
        return self._items(d or [], "GET /api/storages/localfiles/")

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
            expect=dict,
        )

    def import_tasks(self, pid: int, tasks: list[dict]) -> list[int]:
        d = self.request(
            "POST", f"/api/projects/{pid}/import", params={"return_task_ids": "true"}, json=tasks, expect=dict
        )
        ids = d.get("task_ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise StudioError(f"label_studio.url {self.url}: the import answered task_ids {_one_line(str(ids), 80)}")
        return ids

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
                d = self.request("GET", "/api/tasks/", params=params, expect=(dict, list))
            except StudioError as e:
                if e.status == 404:  # past the last page
                    return out
                raise
            items = d.get("tasks", []) if isinstance(d, dict) else d
            out += self._items(items, "GET /api/tasks/")
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
                expect=list,
            )
            out += self._items(d, f"GET /api/projects/{pid}/export")
        return out

    def export_all(self, pid: int) -> list[dict]:
        """Full JSON export of every task of the project, in one request."""
        d = self.request(
            "GET",
            f"/api/projects/{pid}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
            expect=(list, type(None)),
        )
        return self._items(d or [], f"GET /api/projects/{pid}/export")

    def create_annotation(
        self, task_id: int, result: list[dict], *, was_cancelled: bool = False, lead_time: float = 1.0
    ) -> dict:
        return self.request(
            "POST",
            f"/api/tasks/{task_id}/annotations/",
            json={"result": result, "was_cancelled": was_cancelled, "lead_time": lead_time},
            expect=dict,
        )

    def update_annotation(self, annotation_id: int, result: list[dict]) -> dict:
        return self.request("PATCH", f"/api/annotations/{annotation_id}/", json={"result": result}, expect=dict)
