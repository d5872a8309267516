"""Security review as tests: tokens only from the environment, never on disk or screen; weights_only loads;
the local server bound to 127.0.0.1; the demo's files free of the token."""

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.manifest import load_manifest
from iterate.loop.demo import demo_workspace

from conftest import LSPET, REPO, STUDIO_TOKEN, lspet_subset, studio_manifest


def test_every_torch_load_is_weights_only():
    calls = []
    for py in (p for d in ("iterate", "annotation", "model", "reports", "bench") for p in (REPO / d).rglob("*.py")):
        for line in py.read_text().splitlines():
            if "torch.load(" in line:
                calls.append((py.name, line.strip()))
    assert calls, "no torch.load found at all"
    assert all("weights_only=True" in line for _, line in calls), calls


def test_local_server_listens_on_loopback_only(studio):
    port = studio["port"]
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":  # LISTEN
                listening.append(addr)
    assert listening == ["0100007F"], listening  # 127.0.0.1, and nothing on other interfaces


def test_demo_files_and_output_never_hold_the_token(tmp_path, lspet_coco, studio):
    pool = lspet_subset(lspet_coco, list(range(7851, 7871)), tmp_path / "pool.json")
    val = lspet_subset(lspet_coco, list(range(7871, 7877)), tmp_path / "val.json")
    p = studio_manifest(
        tmp_path,
        studio["port"],
        [
            {"name": "pool", "kind": "coco", "path": str(pool), "images": str(LSPET), "split": "pool", "labels": False},
            {"name": "val", "kind": "coco", "path": str(val), "images": str(LSPET), "split": "val"},
        ],
        "security-demo",
        target_size=10,
        selection={"dedup_hamming": 0},
        train={"batch_size": 4, "warmup_steps": 1},
    )
    both = ["demo", "-m", str(p), "--steps", "3", "--minutes", "1"]
    r = CliRunner().invoke(app, both)
    assert r.exit_code == 2 and "give one of them" in r.output, r.output
    r = CliRunner().invoke(app, ["demo", "-m", str(p), "--labels", str(pool), "--steps", "3", "--steps", "4"])
    assert r.exit_code == 0, r.output
    assert "round 2: model #2" in r.output
    assert STUDIO_TOKEN not in r.output
    ws = demo_workspace(load_manifest(p))  # the demo's own folder, never the manifest's workspace
    files = [f for f in ws.rglob("*") if f.is_file()]
    assert len(files) > 10 and any(f.suffix == ".md" for f in files)
    leaks = [f for f in files if STUDIO_TOKEN.encode() in f.read_bytes()]
    assert leaks == []
    assert (ws / "reports" / "round-02.md").is_file()
    assert not load_manifest(p).workspace_dir.exists()
    # rounds by steps (the same figures on every machine), recorded by the demo's bench in its smoke mode
    res = json.loads((ws / "demo-results.json").read_text())
    assert [(r["round"], r["steps"]) for r in res["rounds"] if r["round"]] == [(1, 3), (2, 4)]
    env = {**os.environ, "ITERATE_BENCH_RESULTS": str(tmp_path / "bench")}
    cmd = [
        sys.executable,
        str(REPO / "bench" / "release" / "demo_figures.py"),
        "--smoke",
        "--from",
        str(ws / "demo-results.json"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("round2_train_s=")
    rec = json.loads((tmp_path / "bench" / "demo.json").read_text())
    assert rec["figures"]["round2_steps"] == 4


def test_credentials_in_the_label_studio_url_are_refused_and_never_printed(tmp_path):
    """Issue "Hardening, third pass", item 6: `label_studio.url: http://u:pw@host` is refused at load, and the
    line that says so does not print the password."""
    import yaml

    from conftest import lsp_manifest

    secret = "pw-4f1e9c"
    for url in (f"http://admin:{secret}@127.0.0.1:8080", f"https://{secret}@ls.example.org", "ftp://127.0.0.1"):
        p = lsp_manifest(tmp_path, [], label_studio={"url": url, "token_env": "LABEL_STUDIO_TOKEN"})
        r = CliRunner().invoke(app, ["status", "-m", str(p)])
        assert r.exit_code == 2, r.output
        assert "label_studio.url" in r.output and secret not in r.output
        assert len([x for x in r.output.splitlines() if x.strip()]) == 1
    ok = yaml.safe_load(p.read_text())
    ok["label_studio"]["url"] = "http://127.0.0.1:8080"
    p.write_text(yaml.safe_dump(ok))
    load_manifest(p)  # a plain URL still loads
