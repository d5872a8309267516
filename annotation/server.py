"""`iterate studio start|stop|status`: a local Label Studio 1.23.2 from its own venv, bound to 127.0.0.1,
its SQLite data under ``<workspace>/studio``.

The admin user and its legacy API token are created on the first start from the token variable named by
the manifest (``label_studio.token_env``); the token is passed through the environment only — never
printed, logged or written to disk by iterate.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from annotation.client import StudioError, token_from_env
from annotation.settings import LabelStudioSettings
from iterate.core.errors import IterateError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_USER = "iterate@localhost"


def studio_binary() -> Path:
    for cand in (
        os.environ.get("ITERATE_STUDIO_BIN"),
        REPO / ".venv-studio" / "bin" / "label-studio",
        shutil.which("label-studio"),
    ):
        if cand and Path(cand).is_file():
            return Path(cand)
    raise StudioError("label-studio is not installed: run `bash scripts/setup_studio.sh` (it makes .venv-studio)")


@dataclass
class ServerState:
    url: str
    pid: int | None
    running: bool
    data_dir: Path
    stale: bool = False  # a pid file that names no server of this workspace


def _port_of(url: str) -> tuple[str, int]:
    u = urlparse(url)
    host = u.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost"):
        raise StudioError(f"label_studio.url {url} is not local: `iterate studio` only runs a server on 127.0.0.1")
    return host, u.port or 8080


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _healthy(url: str) -> bool:
    try:
        r = httpx.get(url.rstrip("/") + "/health", timeout=2)
        return r.status_code == 200 and r.json().get("status") == "UP"
    except (httpx.HTTPError, ValueError):
        return False


def data_dir(ls: LabelStudioSettings) -> Path:
    return ls.server_dir


def server_env(ls: LabelStudioSettings, data: Path, token: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "USERNAME", "PASSWORD", "DEBUG")}
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data),
            "LABEL_STUDIO_USERNAME": os.environ.get("LABEL_STUDIO_USERNAME", DEFAULT_USER),
            "LABEL_STUDIO_PASSWORD": os.environ.get("LABEL_STUDIO_PASSWORD", token),
            "LABEL_STUDIO_USER_TOKEN": token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(ls.data_root),
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",
        }
    )
    return env


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): with the pid it names one
    process, never a later one that reuses the number. None where ``/proc`` is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def _proc_cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        try:
            out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return []
        return out.stdout.split()


def _read_pid_file(pf: Path) -> dict | None:
    """The record ``start`` wrote: pid, start time, port, data folder (a bare pid from an older version reads as
    a record without the start time)."""
    try:
        text = pf.read_text().strip()
    except OSError:
        return None
    try:
        rec = json.loads(text)
    except ValueError:
        return None
    if isinstance(rec, int):
        rec = {"pid": rec}
    if not isinstance(rec, dict) or not isinstance(rec.get("pid"), int) or rec["pid"] <= 1:
        return None
    return rec


def _is_ours(rec: dict, port: int) -> bool:
    """Provably the server this workspace started: alive, a ``label-studio start`` on this port, and the same
    process (start time) as the one recorded. Anything else holding the pid is left alone."""
    pid = rec["pid"]
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OverflowError):
        return False
    if rec.get("start") is not None and _proc_start(pid) not in (None, rec["start"]):
        return False
    argv = _proc_cmdline(pid)
    names = {Path(a).name for a in argv}
    if "label-studio" not in names or "start" not in argv:
        return False
    return any(a == "--port" and b == str(port) for a, b in zip(argv, argv[1:]))


def _pid_file(ls: LabelStudioSettings) -> Path:
    return data_dir(ls) / "server.pid"


def status(ls: LabelStudioSettings) -> ServerState:
    """``pid`` is set only for the server this workspace started (:func:`_is_ours`); ``stale`` says the pid file
    names some other process or none."""
    d = data_dir(ls)
    pf = _pid_file(ls)
    rec = _read_pid_file(pf) if pf.is_file() else None
    _, port = _port_of(ls.url)
    ours = rec is not None and _is_ours(rec, port)
    return ServerState(ls.url, rec["pid"] if ours else None, _healthy(ls.url), d, stale=pf.is_file() and not ours)


def _make_private(d: Path) -> None:
    """The server's folder holds its database and with it the API token: only the owner may read it."""
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    for f in d.glob("*.sqlite3*"):
        os.chmod(f, 0o600)


def start(ls: LabelStudioSettings, *, template: Path | None = None, timeout: float = 240.0) -> ServerState:
    """Start the local server (no-op when ours already answers). ``template``: an initialised data dir to copy
    (a fresh data dir runs migrations for about a minute; a copy starts in seconds)."""
    token = token_from_env(ls.token_env)
    if len(token) <= 5:
        raise StudioError(f"{ls.token_env} must be longer than 5 characters for a local server")
    _, port = _port_of(ls.url)
    st = status(ls)
    if st.running and st.pid:
        return st
    if st.stale:
        _pid_file(ls).unlink(missing_ok=True)
    if _port_busy(port):
        raise StudioError(f"port {port} is busy with another program: change label_studio.url or stop it")
    d = data_dir(ls)
    if template is not None and not (d / "label_studio.sqlite3").exists():
        shutil.copytree(template, d, dirs_exist_ok=True)
    _make_private(d)
    log = open(d / "server.log", "ab")
    proc = subprocess.Popen(
        [str(studio_binary()), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)],
        env=server_env(ls, d, token),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=d,
        umask=0o077,  # every file the server writes (its database holds the token) is the owner's alone
    )
    _pid_file(ls).write_text(json.dumps({"pid": proc.pid, "start": _proc_start(proc.pid), "port": port}))
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise StudioError(f"label-studio exited with code {proc.returncode}; see {d / 'server.log'}")
        if _healthy(ls.url):
            return ServerState(ls.url, proc.pid, True, d)
        time.sleep(1.0)
    stop(ls)
    raise StudioError(f"label-studio did not answer on {ls.url} within {timeout:.0f} s; see {d / 'server.log'}")


def stop(ls: LabelStudioSettings, timeout: float = 20.0) -> str:
    """Stop the server this workspace started: ``"stopped"``; ``"stale"`` when the pid file names another process
    or none (the file is removed, nothing is signalled); ``"none"`` when there is no pid file."""
    st = status(ls)
    pf = _pid_file(ls)
    if st.stale:
        pf.unlink(missing_ok=True)
        return "stale"
    if not st.pid:
        return "none"
    try:
        os.killpg(st.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            os.kill(st.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    else:
        try:
            os.killpg(st.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pf.unlink(missing_ok=True)
    return "stopped"


def require_running(ls: LabelStudioSettings) -> None:
    if not _healthy(ls.url):
        raise IterateError(f"Label Studio at {ls.url} is not reachable: start it with `iterate studio start`")
