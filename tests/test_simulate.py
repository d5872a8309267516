import json

from typer.testing import CliRunner

from iterate.cli import app

from conftest import LSPET, REPO, lspet_subset


def test_simulate_tiny_slice_end_to_end(tmp_path, lspet_coco):
    pool = lspet_subset(lspet_coco, list(range(7501, 7541)), tmp_path / "pool.json")
    val = lspet_subset(lspet_coco, list(range(7541, 7556)), tmp_path / "val.json")
    test = lspet_subset(lspet_coco, list(range(7556, 7571)), tmp_path / "test.json")
    r = CliRunner().invoke(
        app,
        [
            "simulate",
            "-m",
            str(REPO / "data_manifest.yaml"),
            "--pool",
            str(pool),
            "--val",
            str(val),
            "--test",
            str(test),
            "--images",
            str(LSPET),
            "--budgets",
            "6,6",
            "--strategies",
            "random,full",
            "--minutes",
            "0.1",
            "--base",
            "none",
            "--out",
            str(tmp_path / "sim"),
        ],
    )
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "sim" / "simulate.json").read_text())
    assert set(s["strategies"]) == {"random", "full"}
    assert s["strategies"]["full"]["labels"] == [0, 6, 12]
    md = (tmp_path / "sim" / "simulate.md").read_text()
    assert "labels needed to reach random's final PCKh@0.5" in md
    assert (tmp_path / "sim" / "simulate.png").stat().st_size > 5000
