"""The instructions shown before labeling and the joints' ``model_index``: generated from the manifest, set on the
project by ``ensure_project`` and read back from a real Label Studio (session fixture `studio`), and the order
Label Studio's own COCO export gives the keypoints."""

from __future__ import annotations

import io
import json
import random
import xml.etree.ElementTree as ET
import zipfile

import httpx
import pytest
import yaml

from annotation.client import Studio
from annotation.labeling import generated_instructions, instructions, label_config, parse_result, to_result
from annotation.push import ensure_project, image_url
from iterate.core.errors import ManifestError
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.settings import labeling

from conftest import LSP_NAMES, LSPET, STUDIO_TOKEN, STUDIO_TOKEN_ENV, lsp_manifest, studio_manifest


def _with_instructions(path, value):
    d = yaml.safe_load(path.read_text())
    d["label_studio"]["instructions"] = value
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return load_manifest(path)


def _manifest(tmp_path, instructions_value=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = lsp_manifest(tmp_path, [], label_studio={"url": "http://127.0.0.1:1", "token_env": STUDIO_TOKEN_ENV})
    return _with_instructions(p, instructions_value) if instructions_value is not None else load_manifest(p)


def _lines_naming(text: str, name: str) -> list[str]:
    return [ln for ln in text.splitlines() if f"<b>{name}</b>" in ln]


# -- pure: the text itself ------------------------------------------------------------------------------
def test_generated_instructions_name_every_joint_side_visibility_and_strata(tmp_path):
    cfg = labeling(_manifest(tmp_path))
    text = instructions(cfg)
    assert text == generated_instructions(cfg)
    for name in LSP_NAMES:  # one line each
        (line,) = _lines_naming(text, name)
        assert line.startswith("<li>")
        side = "left" if name.startswith("left_") else "right" if name.startswith("right_") else None
        assert (f"the subject's own {side}" in line) if side else ("subject" not in line)
    assert "not the image's" in text
    assert "<i>occluded</i>" in text and "estimate where it is" in text  # hidden but estimable: place + occluded
    assert "outside the frame" in text and "Do not place it" in text  # else left unlabeled
    assert cfg.strata and all(vals for vals in cfg.strata.values())
    for key, vals in cfg.strata.items():
        (line,) = _lines_naming(text, key)
        assert line == f"<li><b>{key}</b>: {', '.join(vals)}</li>"


def test_manifest_text_replaces_or_extends_and_is_escaped(tmp_path):
    gen = generated_instructions(labeling(_manifest(tmp_path / "a")))
    own = "Label the <patient>, not the nurse & co.\nOne person per frame.\n\nAsk Ana when unsure."
    replaced = instructions(labeling(_manifest(tmp_path / "b", own)))
    assert replaced == (
        "<p>Label the &lt;patient&gt;, not the nurse &amp; co.<br>One person per frame.</p>\n<p>Ask Ana when unsure.</p>\n"
    )
    assert "right_ankle" not in replaced
    extended = instructions(labeling(_manifest(tmp_path / "c", {"extend": "Ask <b>Ana</b>."})))
    assert extended == gen + "<p>Ask &lt;b&gt;Ana&lt;/b&gt;.</p>\n"


def test_joint_names_and_strata_from_the_manifest_are_escaped(tmp_path):
    d = yaml.safe_load(lsp_manifest(tmp_path, []).read_text())
    d["keypoints"] = {"names": ["left_<eye>", "right_<eye>", "nose&mouth"], "normalizer": {"kind": "person_box"}}
    d["strata"] = {"light": ["dim<1lx", "bright"]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(d))
    text = instructions(labeling(load_manifest(tmp_path / "m.yaml")))
    assert "<eye>" not in text and "<1lx" not in text
    assert "<li><b>left_&lt;eye&gt;</b>: the subject's own left</li>" in text
    assert "<li><b>nose&amp;mouth</b></li>" in text and "dim&lt;1lx, bright" in text


@pytest.mark.parametrize("bad", ["", "  ", {"extend": ""}, {"extned": "x"}, {"extend": "x", "more": 1}, 5, True])
def test_instructions_of_another_shape_are_refused(tmp_path, bad):
    with pytest.raises(ManifestError, match="label_studio.instructions"):
        _manifest(tmp_path, bad)


def test_label_config_carries_model_index_and_the_sdk_still_accepts_it(tmp_path):
    from label_studio_sdk.label_interface import LabelInterface

    cfg = labeling(_manifest(tmp_path))
    xml = label_config(cfg)
    labels = ET.fromstring(xml).find("KeyPointLabels").findall("Label")
    assert [(lab.get("value"), lab.get("model_index")) for lab in labels] == [
        (n, str(i)) for i, n in enumerate(cfg.keypoints.names)
    ]
    kps = [[10 + i, 20 + i, 1 if i % 3 else 2] for i in range(len(cfg.keypoints.names))]
    result = to_result(cfg, kps, 100, 100, {"posture": "upright"}, origin="prediction")
    assert LabelInterface(xml).validate_prediction({"result": result, "score": 0.5}, return_errors=True) == []
    back, attrs = parse_result(cfg, result)
    assert [[round(a, 6) for a in kp[:2]] + [kp[2]] for kp in back] == kps and attrs == {"posture": "upright"}


# -- against the real server --------------------------------------------------------------------------
def _server_setup(tmp_path, studio, title):
    p = studio_manifest(tmp_path, studio["port"], [], title)
    m = load_manifest(p)
    return p, m, Ledger(m.workspace_dir), Studio.from_settings(labeling(m).label_studio)


def _stored_indices(xml: str) -> list[tuple[str, int]]:
    labels = ET.fromstring(xml).find("KeyPointLabels").findall("Label")
    return [(lab.get("value"), int(lab.get("model_index"))) for lab in labels]


def test_project_holds_instructions_and_model_index_and_keeps_them_current(tmp_path, studio):
    path, m, led, st = _server_setup(tmp_path, studio, "instructions")
    cfg = labeling(m)
    pid = ensure_project(cfg, led, st)
    proj = st.project(pid)
    assert proj["show_instruction"] is True
    shown = proj["expert_instruction"]
    for name in cfg.keypoints.names:
        assert len(_lines_naming(shown, name)) == 1
    for key, vals in cfg.strata.items():
        assert f"<li><b>{key}</b>: {', '.join(vals)}</li>" in shown
    assert _stored_indices(proj["label_config"]) == [(n, i) for i, n in enumerate(cfg.keypoints.names)]
    attrs = proj["parsed_label_config"]["kp"]["labels_attrs"]  # what the server's exporters read
    assert [int(attrs[n]["model_index"]) for n in cfg.keypoints.names] == list(range(len(cfg.keypoints.names)))

    patches = []
    real = st.update_project
    st.update_project = lambda pid, **f: patches.append(f) or real(pid, **f)
    assert ensure_project(cfg, led, st) == pid
    assert patches == []  # the server stores the HTML as sent: nothing to update on a re-run

    m2 = _with_instructions(path, {"extend": "Ask Ana <now>."})
    assert ensure_project(labeling(m2), led, st) == pid
    assert [set(f) for f in patches] == [{"expert_instruction"}]
    shown = st.project(pid)["expert_instruction"]
    assert shown.startswith("<h3>Joints to place (14)</h3>") and shown.rstrip().endswith("<p>Ask Ana &lt;now&gt;.</p>")

    m3 = _with_instructions(path, "Only the patient.")
    st.update_project(pid, show_instruction=False)
    ensure_project(labeling(m3), led, st)
    proj = st.project(pid)
    assert proj["expert_instruction"].strip() == "<p>Only the patient.</p>" and proj["show_instruction"] is True
    st.close()


def _coco_export(studio, pid: int) -> dict:
    r = httpx.get(
        f"http://127.0.0.1:{studio['port']}/api/projects/{pid}/export",
        params={"exportType": "COCO", "download_all_tasks": "true", "download_resources": "false"},
        headers={"Authorization": f"Token {STUDIO_TOKEN}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text[:300]
    if r.content[:2] == b"PK":  # result.json beside an images/ folder: a zip
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            return json.loads(z.read("result.json"))
    return r.json()


def test_label_studio_coco_export_orders_keypoints_by_model_index(tmp_path, studio):
    _, m, led, st = _server_setup(tmp_path, studio, "coco order")
    cfg = labeling(m)
    pid = ensure_project(cfg, led, st)
    frame = sorted(LSPET.rglob("*.jpg"))[0]
    st.add_local_storage(pid, str(frame.parent))
    (tid,) = st.import_tasks(pid, [{"image": image_url(cfg, frame), "frame_id": "f1"}])
    w, h = 400, 300
    names = cfg.keypoints.names
    kps = [[10.0 + 20 * i, 15.0 + 10 * i, 2] for i in range(len(names))]
    kps[names.index("neck")][2] = 0  # not placed
    kps[names.index("left_wrist")][2] = 1  # placed, marked occluded
    result = to_result(cfg, kps, w, h, rng=random.Random(0))
    random.Random(1).shuffle(result)  # scrambled: the export may not follow the result's order
    assert [i["value"]["keypointlabels"][0] for i in result if i["type"] == "keypointlabels"] != [
        n for n in names if n != "neck"
    ]
    st.create_annotation(tid, result)

    coco = _coco_export(studio, pid)
    (ann,) = coco["annotations"]
    (cat,) = [c for c in coco["categories"] if c["id"] == ann["category_id"]]
    assert cat["keypoints"] == list(names)
    got = ann["keypoints"]
    assert len(got) == 3 * len(names)
    for i, n in enumerate(names):
        x, y, v = kps[i]
        want = [0, 0, 0] if v == 0 else [round(x), round(y), 2]  # Label Studio writes 2 for an occluded joint too
        assert got[3 * i : 3 * i + 3] == want, n
    assert ann["num_keypoints"] == len(names) - 1
    st.close()
