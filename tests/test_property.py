"""Property-based: generated COCO files, prediction files and manifests fed to `ingest`, `evaluate` and
`status` never give a traceback and never leave a half-written ledger (issue "Hardening")."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest

from conftest import LSPET, REPO, demo_manifest_dict, lsp_manifest

IDS = [7001, 7002, 7003]
_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# JSON-able junk: what a hand-edited or foreign file may hold where a number, list or object belongs
junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _base(coco: dict) -> dict:
    return copy.deepcopy(
        {
            "images": [i for i in coco["images"] if i["id"] in IDS],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in IDS],
            "categories": coco["categories"],
        }
    )


@st.composite
def mutated_coco(draw, base: dict):
    d = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["image", "annotation", "keypoint", "top", "category"]))
        if where == "top":
            d[draw(st.sampled_from(["images", "annotations", "categories"]))] = draw(junk)
        elif where == "image" and isinstance(d.get("images"), list) and d["images"]:
            im = d["images"][draw(st.integers(0, len(d["images"]) - 1))]
            if isinstance(im, dict):
                im[draw(st.sampled_from(["id", "file_name", "width", "height"]))] = draw(junk)
        elif where == "annotation" and isinstance(d.get("annotations"), list) and d["annotations"]:
            a = d["annotations"][draw(st.integers(0, len(d["annotations"]) - 1))]
            if isinstance(a, dict):
                a[draw(st.sampled_from(["id", "image_id", "bbox", "attributes", "bbox_head", "keypoints"]))] = draw(
                    junk
                )
        elif where == "keypoint" and isinstance(d.get("annotations"), list) and d["annotations"]:
            a = d["annotations"][0]
            if isinstance(a, dict) and isinstance(a.get("keypoints"), list) and a["keypoints"]:
                a["keypoints"][draw(st.integers(0, len(a["keypoints"]) - 1))] = draw(junk)
        elif where == "category" and isinstance(d.get("categories"), list) and d["categories"]:
            c = d["categories"][0]
            if isinstance(c, dict):
                c["keypoints"] = draw(junk)
    return d


def _no_traceback(r) -> None:
    assert r.exit_code in (0, 2), (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        assert len([line for line in r.output.splitlines() if line.strip()]) == 1, r.output


def test_generated_coco_files_never_traceback_nor_half_write(lspet_coco):
    base = _base(lspet_coco)

    @_SETTINGS
    @given(mutated_coco(base))
    def check(coco):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            f = d / "labels.json"
            f.write_text(json.dumps(coco, allow_nan=True))
            p = lsp_manifest(d, [{"name": "l", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "val"}])
            r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
            _no_traceback(r)
            with Ledger(load_manifest(p).workspace_dir) as led:
                n_frames, n_labels = len(led.frames()), led.count_labels()
            if r.exit_code == 2:
                assert (n_frames, n_labels) == (0, 0)  # refused whole: nothing written
            else:
                assert n_labels <= n_frames <= len(IDS)
                # what was stored is finite and in {0, 1, 2}
                with Ledger(load_manifest(p).workspace_dir) as led:
                    for _, lab in led.current_labels():
                        assert all(
                            math.isfinite(x) and math.isfinite(y) and v in (0, 1, 2) for x, y, v in lab.keypoints
                        )
            pr = d / "preds.json"
            pr.write_text(json.dumps([{"image_id": i, "keypoints": [1.0] * 42, "score": 1} for i in IDS]))
            _no_traceback(CliRunner().invoke(app, ["evaluate", "-m", str(p), "--pred", str(pr), "--gt", str(f)]))

    check()


def test_generated_prediction_files_never_traceback(lspet_coco, tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_base(lspet_coco)))
    man = str(REPO / "data_manifest.yaml")
    preds = (
        st.lists(
            st.fixed_dictionaries(
                {
                    "image_id": st.sampled_from(IDS) | junk,
                    "keypoints": st.lists(st.floats(allow_nan=True) | junk, min_size=0, max_size=45),
                    "score": junk,
                }
            ),
            max_size=4,
        )
        | junk
    )

    @_SETTINGS
    @given(preds)
    def check(p):
        f = tmp_path / "p.json"
        f.write_text(json.dumps(p, allow_nan=True))
        _no_traceback(CliRunner().invoke(app, ["evaluate", "-m", man, "--pred", str(f), "--gt", str(gt), "--json"]))

    check()


def test_generated_manifests_never_traceback(tmp_path):
    good = demo_manifest_dict()
    good["sources"] = []
    keys = [
        ("target_size",),
        ("chunks",),
        ("keypoints", "names"),
        ("keypoints", "flip_pairs"),
        ("keypoints", "normalizer"),
        ("train", "lr"),
        ("train", "epochs"),
        ("selection", "explore"),
        ("model", "input_size"),
        ("strata",),
        ("label_studio", "token_env"),
        ("sources",),
    ]

    @_SETTINGS
    @given(st.lists(st.tuples(st.sampled_from(keys), junk), min_size=1, max_size=3))
    def check(changes):
        d = copy.deepcopy(good)
        for path, value in changes:
            node = d
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        p = tmp_path / "m.yaml"
        try:
            p.write_text(yaml.safe_dump(d, allow_unicode=True))
        except yaml.YAMLError:
            return
        _no_traceback(CliRunner().invoke(app, ["status", "-m", str(p)]))

    check()


def test_a_control_character_in_a_field_name_stays_on_one_line(tmp_path):
    """Found by the generated-manifests test: a key holding U+001E (a line break to str.splitlines) split the error
    in two. Control characters in an error are written as escapes."""
    d = demo_manifest_dict()
    d["sources"] = []
    d["keypoints"]["normalizer"] = {"\x1e": None, "a\nb": 1}
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d, allow_unicode=True))
    r = CliRunner().invoke(app, ["status", "-m", str(p)])
    _no_traceback(r)
    assert r.exit_code == 2 and "keypoints.normalizer" in r.output and "\\x1e" in r.output


# -- Label Studio annotations (issue 29, item 19): parse_result and the sync step -------------------------------------
def _studio_workspace(d: Path, lspet_coco: dict):
    """A workspace with IDS unlabeled in the pool, tasks recorded as push records them (project 1, task = image id)."""
    from iterate.loop.ingest import ingest

    f = d / "pool.json"
    f.write_text(json.dumps(_base(lspet_coco)))
    p = lsp_manifest(
        d,
        [{"name": "p", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "pool", "labels": False}],
        label_studio={"data_root": "/"},
        selection={"dedup_hamming": 0},
    )
    m = load_manifest(p)
    led = Ledger(m.workspace_dir)
    ingest(m, led)
    frames = sorted(led.frames("pool"), key=lambda f: f.id)
    with led.transaction():
        for i, fr in enumerate(frames):
            led.add_task(fr.id, 1, i + 1)
    return m, led, frames


def _good_result(cfg, fr, rng_seed: int, gt: dict) -> list[dict]:
    import random

    from annotation.labeling import to_result

    kps = [[min(max(x, 0.0), fr.width), min(max(y, 0.0), fr.height), v] for x, y, v in gt[Path(fr.path).name]]
    attrs = {k: v[rng_seed % len(v)] for k, v in cfg.strata.items() if v}
    return to_result(cfg, kps, fr.width, fr.height, attrs, rng=random.Random(rng_seed))


number_junk = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**400), 10**400) | junk
size_junk = st.integers(-5, 5000) | st.floats(-5, 5000) | st.sampled_from(["167", True, None, [], {}]) | junk


@st.composite
def mutated_result(draw, good: list[dict]):
    r = copy.deepcopy(good)
    for _ in range(draw(st.integers(1, 4))):
        if not isinstance(r, list) or not r:
            break
        i = draw(st.integers(0, len(r) - 1))
        item = r[i]
        where = draw(st.sampled_from(["result", "item", "value", "number", "name", "size", "key", "copy"]))
        if where == "result":
            r = draw(junk)
        elif where == "item":
            r[i] = draw(junk)
        elif not isinstance(item, dict):
            continue
        elif where == "value":
            item["value"] = draw(junk)
        elif where == "number" and isinstance(item.get("value"), dict):
            item["value"][draw(st.sampled_from(["x", "y"]))] = draw(number_junk)
        elif where == "name" and isinstance(item.get("value"), dict):
            item["value"][draw(st.sampled_from(["keypointlabels", "choices"]))] = draw(
                junk | st.lists(st.sampled_from(["neck", "head_top", "occluded", "upright", "left_toe"]), max_size=3)
            )
        elif where == "size":
            item[draw(st.sampled_from(["original_width", "original_height"]))] = draw(size_junk)
        elif where == "key":
            item[draw(st.sampled_from(["id", "type", "from_name"]))] = draw(junk)
        elif where == "copy":
            r.append(copy.deepcopy(item))
    return r


def _valid_label(cfg, kps, attrs, fr) -> None:
    assert len(kps) == len(cfg.keypoints.names)
    for x, y, v in kps:
        assert v in (0, 1, 2) and math.isfinite(x) and math.isfinite(y)
        assert v == 0 or (0 <= x <= fr.width and 0 <= y <= fr.height)
    assert all(k in cfg.strata and val in cfg.strata[k] for k, val in attrs.items())


def _one_line(msg: str) -> None:
    assert msg and len(msg.splitlines()) == 1 and len(msg) < 400, msg


def test_generated_annotations_parse_to_a_label_or_one_line(lspet_coco, tmp_path):
    from annotation.labeling import BadAnnotation, parse_result
    from iterate.loop.settings import labeling

    m, led, frames = _studio_workspace(tmp_path, lspet_coco)
    cfg = labeling(m)
    gt = _gt_by_name(lspet_coco, cfg)
    goods = [_good_result(cfg, fr, i, gt) for i, fr in enumerate(frames)]

    @_SETTINGS
    @given(st.integers(0, len(frames) - 1).flatmap(lambda i: st.tuples(st.just(i), mutated_result(goods[i]))))
    def check(case):
        i, result = case
        try:
            kps, attrs = parse_result(cfg, result, frames[i].width, frames[i].height)
        except BadAnnotation as e:
            _one_line(str(e))
        else:
            _valid_label(cfg, kps, attrs, frames[i])

    check()
    led.close()


def test_generated_tasks_through_the_sync_step_never_raise(lspet_coco, tmp_path):
    """The sync step on exported tasks as Label Studio may hold them (any result, any annotation fields): a new
    label that is valid, or the task named invalid in one line; never another exception, never half a write."""
    from annotation.sync import SyncSummary, sync_task
    from iterate.loop.settings import labeling

    m, led, frames = _studio_workspace(tmp_path, lspet_coco)
    cfg = labeling(m)
    gt = _gt_by_name(lspet_coco, cfg)
    goods = [_good_result(cfg, fr, i, gt) for i, fr in enumerate(frames)]
    by_task = led.project_tasks(1)
    from annotation.push import pushed_data

    def annotation(i):
        return st.fixed_dictionaries(
            {
                "id": st.integers(1, 10**6) | junk,
                "result": mutated_result(goods[i]) | st.just(goods[i]),
                "was_cancelled": st.booleans() | junk,
                "completed_by": st.integers(1, 9) | junk,
                "updated_at": st.just("2025-01-01T00:00:00Z") | junk,
            }
        )

    def task(i):
        return st.fixed_dictionaries(
            {
                "id": st.just(i + 1),
                "data": st.just(pushed_data(cfg, frames[i])),
                "annotations": st.lists(annotation(i), max_size=3) | junk,
            }
        )

    @_SETTINGS
    @given(st.integers(0, len(frames) - 1).flatmap(lambda i: st.tuples(st.just(i), task(i))))
    def check(case):
        i, t = case
        s = SyncSummary()
        n_before = led.raw("SELECT COUNT(*) FROM labels").fetchone()[0]
        with led.transaction():
            sync_task(cfg, led, 1, t, by_task, s)
        for line in s.invalid:
            assert line.startswith(f"task {i + 1}: ")
            _one_line(line)
        n_after = led.raw("SELECT COUNT(*) FROM labels").fetchone()[0]
        assert n_after - n_before == s.new + s.updated <= 1
        lab = led.current_label(frames[i].id)
        if lab is not None:
            _valid_label(cfg, lab.keypoints, lab.attributes, frames[i])

    check()
    led.close()


def _gt_by_name(lspet_coco: dict, cfg) -> dict:
    """image file name → the first person's keypoints [[x, y, v] × K] (LSPET ground truth)."""
    base = _base(lspet_coco)
    names = {im["id"]: Path(im["file_name"]).name for im in base["images"]}
    out = {}
    for a in base["annotations"]:
        k = a["keypoints"]
        out.setdefault(names[a["image_id"]], [[k[3 * j], k[3 * j + 1], k[3 * j + 2]] for j in range(len(k) // 3)])
    return out
