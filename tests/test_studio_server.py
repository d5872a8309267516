"""The local Label Studio server is the project's own: `studio stop` signals only the server this workspace
started, and its folder (its database holds the API token) is readable by the owner alone (issue "Hardening,
third pass", items 1 and 3)."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time

from typer.testing import CliRunner

from annotation import server
from iterate.cli import app
from iterate.core.manifest import load_manifest
from iterate.loop.settings import studio_settings

from conftest import _free_port, studio_manifest


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "600"], start_new_session=True)


def _pid_file(m):
    d = server.data_dir(studio_settings(m))
    d.mkdir(parents=True, exist_ok=True)
    return d / "server.pid"


def test_stop_leaves_a_stranger_holding_a_stale_pid_alone(tmp_path):
    p = studio_manifest(tmp_path, _free_port(), [], "stale")
    m = load_manifest(p)
    sleeper = _sleeper()
    try:
        for record in (str(sleeper.pid), json.dumps({"pid": sleeper.pid, "start": "1", "port": 1})):
            pf = _pid_file(m)
            pf.write_text(record)  # a crash or a reboot left the file; the pid now belongs to another program
            assert server.status(studio_settings(m)).pid is None
            r = CliRunner().invoke(app, ["studio", "stop", "-m", str(p)])
            assert r.exit_code == 0, r.output
            assert "stale" in r.output and "stopped nothing" in r.output
            time.sleep(0.3)
            assert sleeper.poll() is None, "studio stop killed a process that is not its server"
            assert not pf.exists()
        r = CliRunner().invoke(app, ["studio", "stop", "-m", str(p)])
        assert "no local Label Studio was running" in r.output
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()


def test_stop_leaves_another_workspaces_server_alone(tmp_path, studio):
    """A real label-studio process, but another workspace's (the session server, on another port)."""
    ours = studio_settings(studio["manifest"])
    rec = json.loads(server._pid_file(ours).read_text())
    m = load_manifest(studio_manifest(tmp_path, _free_port(), [], "other"))
    _pid_file(m).write_text(json.dumps(rec))
    assert server.stop(studio_settings(m)) == "stale"
    assert server.status(ours).pid == rec["pid"] and server.status(ours).running


def test_the_servers_folder_and_database_are_private(studio):
    ls = studio_settings(studio["manifest"])
    d = server.data_dir(ls)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    dbs = list(d.glob("*.sqlite3"))
    assert dbs, list(d.iterdir())
    for f in dbs:
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, (f, oct(f.stat().st_mode))
