"""`iterate select`: pick the next frames to label and push them to Label Studio.

Strategies are compositions of the pieces in :mod:`iterate.selection`:

    random       — uniform over the candidates
    uncertainty  — top combined uncertainty (confidence, flip disagreement, multi-peak entropy, by rank)
    diversity    — uncertainty, then k-center greedy on embeddings among the top candidates
    full         — diversity inside per-stratum quotas from the last report's focus (+ a random share)

Frames are scored by the latest model trained in the loop, else by the manifest's ``model.base`` (the first chunk
is then scored and pre-annotated by the pretrained model); with no model at all, every strategy but ``random`` is
a cold start: k-center over cheap image features. Scores and embeddings are cached per model under
``<workspace>/cache/model-<id>/`` (the base: ``model-base/``); a second select with the same model scores nothing
again. Never picks a val/test, labeled or pushed frame.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotation.client import Studio
from annotation.push import push
from iterate.core.chunks import chunk_progress, current_chunk
from iterate.core.errors import IterateError
from iterate.core.ledger import Frame, Ledger
from iterate.core.manifest import Manifest
from iterate.core.score_kinds import CACHE_WIDTH
from iterate.loop.distributed import barrier, rank_world
from iterate.loop.models import ScoringModel, cache_dir, is_base, model_name, round_model, scoring_model
from iterate.loop.pool import SCORING_BATCH, PoolParts, Scored, build_pool, check_weights, score_samples
from iterate.loop.samples import boxes_stamp, frame_samples
from iterate.loop.settings import derived_strata, keypoint_spec, labeling, selection_setup, studio_settings
from iterate.selection import diversity, features, strategies
from iterate.selection import scores as sc
from iterate.selection.strata import StrataPredictor
from model.checkpoints import joint_match
from model.infer import SCORING, load_predictor
from reports.round import RoundPicks, write_round


@dataclass
class Selection:
    round_id: int | None
    frame_ids: list[str]
    strategy: str
    cold_start: bool
    table: list[dict]
    notes: list[str] = field(default_factory=list)
    scored_now: int = 0
    scored_by: str | None = None  # "the base model", "model #3"; None on a cold start or for random
    csv: Path | None = None
    markdown: Path | None = None
    push: object | None = None


# -- candidates ---------------------------------------------------------------------------------------
def candidates(ledger: Ledger) -> list[Frame]:
    """Pool frames no round holds: not labeled, not tasked, and not selected by an earlier round (one selected with
    ``--no-push``, or whose push did not finish, keeps its frames until `iterate push --round N` sends them)."""
    taken = ledger.labeled_frame_ids() | ledger.tasked_frame_ids() | ledger.selected_frame_ids()
    return [f for f in ledger.frames("pool") if f.id not in taken]


# -- model scoring with a per-model cache ----------------------------------------------------------------
SCORING_PATH = (
    "one flip-TTA pass on the whole frame (no box-refine pass: half the cost); the pre-annotations "
    "pushed to Label Studio use the checkpoint's full inference path"
)


def score_pool(m: Manifest, ledger: Ledger, model: ScoringModel, frames: list[Frame], progress=None) -> Scored | None:
    """Uncertainty scores, keypoints and embeddings of ``frames`` by :data:`SCORING_PATH`, cached per model.

    Under torchrun every rank scores its shard of the frames not yet cached and writes it beside the cache; rank 0
    merges the shards into the cache and returns the scores, the other ranks return None."""
    ck_path = Path(model.path)
    if not ck_path.is_file():
        raise IterateError(f"{model_name(model)}: checkpoint {ck_path} is gone (stale); run `iterate retrain`")
    d = cache_dir(m, model)
    d.mkdir(parents=True, exist_ok=True)
    stamp = {
        "checkpoint": str(ck_path),
        "mtime": ck_path.stat().st_mtime,
        "size": ck_path.stat().st_size,
        **boxes_stamp(ledger),
    }
    idx_file = d / "index.json"
    old_ids, notes = _cached_ids(d, stamp, model)
    have = set(old_ids)
    todo = [f for f in frames if f.id not in have]
    distributed, rank, world = rank_world()
    if todo:
        # under torchrun each rank scores every world-th batch: the same batches one process would run
        mine = [todo[i] for i in _shard_rows(len(todo), rank, world)]
        part = score_samples(
            keypoint_spec(m),
            ck_path,
            frame_samples(ledger, mine),
            tmp=d / f".emb-new-{rank}.npy",
            progress=progress,
        )
        if distributed:
            shard_dir = d / "shards"
            shard_dir.mkdir(exist_ok=True)
            _save_shard(shard_dir / f"rank-{rank}.npz", part)
            barrier()
            if rank != 0:
                return None  # rank 0 merges, chooses and pushes
            parts = {r: _load_shard(shard_dir / f"rank-{r}.npz") for r in range(world)}
            part = _assemble(len(todo), world, parts)
            shutil.rmtree(shard_dir, ignore_errors=True)
        if part[3] is None:
            raise IterateError("no pool frame could be read")
        _merge_cache(d, old_ids, [f.id for f in todo], *part, stamp)
    elif rank != 0:
        return None
    ids = json.loads(idx_file.read_text())["frame_ids"]
    pos = {fid: i for i, fid in enumerate(ids)}
    rows = np.array([pos[f.id] for f in frames], dtype=np.int64)
    all_sc = np.load(d / "scores.npy")
    emb_all = np.load(d / "emb.npy", mmap_mode="r")
    return Scored(
        [f.id for f in frames],
        {n: all_sc[rows, i] for i, n in enumerate(sc.NAMES)},
        np.load(d / "kps.npy")[rows],
        np.load(d / "kpconf.npy")[rows].astype(np.float32),
        np.asarray(emb_all[rows]),
        len(todo),
        notes,
    )


_CACHE_FILES = ("index.json", "scores.npy", "kps.npy", "kpconf.npy", "emb.npy")


def _cached_ids(d: Path, stamp: dict, model: ScoringModel) -> tuple[list[str], list[str]]:
    """The frame ids the cache holds for this checkpoint, and a note when it was broken (a kill mid-write, a full
    disk): then it is dropped and everything is scored again."""
    idx_file = d / "index.json"
    if not idx_file.is_file():
        return [], []
    try:
        idx = json.loads(idx_file.read_text())
        if idx.get("stamp") != stamp:
            return [], []
        ids = list(idx["frame_ids"])
        for name in _CACHE_FILES[1:]:
            if len(np.load(d / name, mmap_mode="r")) != len(ids):
                raise ValueError(f"{name} does not hold one row per frame")
        return ids, []
    except (OSError, ValueError, EOFError, KeyError, TypeError) as e:
        for name in _CACHE_FILES:
            (d / name).unlink(missing_ok=True)
        return [], [f"the score cache of {model_name(model)} in {d} was broken ({type(e).__name__}): scored again"]


def _shard_rows(n: int, rank: int, world: int) -> list[int]:
    """Rows of an ``n``-frame list that ``rank`` scores: every world-th batch of :data:`SCORING_BATCH`."""
    return [i for i in range(n) if (i // SCORING_BATCH) % world == rank]


def _save_shard(path: Path, part) -> None:
    sc_, kp, ks, emb = part
    tmp = path.with_name(f".{path.name}")
    with open(tmp, "wb") as f:
        np.savez(f, sc=sc_, kp=kp, ks=ks, emb=emb if emb is not None else np.zeros((0, 0), np.float16))
    os.replace(tmp, path)


def _load_shard(path: Path):
    with np.load(path) as z:
        emb = z["emb"]
        return z["sc"], z["kp"], z["ks"], emb if emb.size else None


def _assemble(n: int, world: int, parts: dict):
    """The ranks' shards back in one list's order."""
    sc_ = np.zeros((n, CACHE_WIDTH), np.float32)
    kp = np.zeros((n, *parts[0][1].shape[1:]), np.float32)
    ks = np.zeros((n, parts[0][2].shape[1]), np.float16)
    dims = [p[3].shape[1] for p in parts.values() if p[3] is not None]
    emb = np.zeros((n, dims[0]), np.float16) if dims else None
    for r, (s, k, c, e) in parts.items():
        rows = _shard_rows(n, r, world)
        sc_[rows], kp[rows], ks[rows] = s, k, c
        if emb is not None and e is not None:
            emb[rows] = e
    return sc_, kp, ks, emb


def _merge_cache(d: Path, old_ids, new_ids, sc_new, kp_new, ks_new, emb_new, stamp) -> None:
    def merged(name, new):
        p = d / name
        if old_ids and p.is_file():
            return np.concatenate([np.load(p), new])
        return new

    arrays = {
        "scores.npy": merged("scores.npy", sc_new),
        "kps.npy": merged("kps.npy", kp_new),
        "kpconf.npy": merged("kpconf.npy", ks_new),
        "emb.npy": merged("emb.npy", emb_new),
    }
    for name, arr in arrays.items():
        tmp = d / f".{name}.tmp.npy"
        np.save(tmp, arr)
        os.replace(tmp, d / name)
    tmp = d / ".index.json.tmp"
    tmp.write_text(json.dumps({"stamp": stamp, "frame_ids": list(old_ids) + list(new_ids)}))
    os.replace(tmp, d / "index.json")


def _cached_feature(p: Path) -> np.ndarray | None:
    """A cold-start feature file, or None when it is missing or broken (a kill mid-write left it empty)."""
    try:
        x = np.load(p)
    except (OSError, ValueError, EOFError):
        return None
    return x if x.ndim == 1 and x.size and np.isfinite(x).all() else None


def _save_atomic(p: Path, x: np.ndarray) -> None:
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}.npy")
    np.save(tmp, x)
    os.replace(tmp, p)


def cold_start_features(
    m: Manifest, frames: list[Frame], progress=None, notes: list[str] | None = None
) -> tuple[np.ndarray, list[int]]:
    """Image features of every candidate (cached per frame id, written atomically; a broken cache file is computed
    again and counted in ``notes``); → (features, rows that could be read)."""
    d = m.workspace_dir / "cache" / "coldstart"
    d.mkdir(parents=True, exist_ok=True)
    feats, ok, broken = [], [], 0
    for i, f in enumerate(frames):
        p = d / f"{f.id}.npy"
        x = _cached_feature(p) if p.is_file() else None
        if x is None:
            broken += p.is_file()
            x = features.image_features(f.path)
            if x is not None:
                _save_atomic(p, x)
        if x is not None:
            feats.append(x)
            ok.append(i)
        if progress:
            progress(i + 1, len(frames))
    if broken and notes is not None:
        notes.append(f"{broken} broken cold-start feature file(s) in {d} computed again")
    if not feats:
        raise IterateError("no pool frame could be read")
    return features.pca(np.stack(feats), 32, selection_setup(m).feature_seed), ok


# -- the selection itself -----------------------------------------------------------------------------------
def _no_focus_note(m: Manifest) -> str:
    if (m.workspace_dir / "reports" / "latest.md").exists():
        return (
            "the latest report sets no focus (no stratum with a gap to steer by: are the strata set on val?): "
            "selecting without gap focus"
        )
    return "no report focus yet (run `iterate report`): selecting without gap focus"


def read_focus(m: Manifest) -> dict | None:
    """The latest report's focus for one attribute: the key of its top-ranked stratum, and that key's shares."""
    p = m.workspace_dir / "reports" / "focus.json"
    if not p.is_file():
        return None
    try:
        f = json.loads(p.read_text())
        items = [i for i in f.get("items", []) if i.get("budget_share", 0) > 0]
        if not items:
            return None
        key = items[0]["key"]
        return {"key": key, "weights": dict(f["weights"][key]), "round": f.get("round"), "explore": f.get("explore")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise IterateError(
            f"{p}: the report's focus cannot be read ({type(e).__name__}): run `iterate report` to write it again"
        ) from None


def select(
    m: Manifest,
    ledger: Ledger,
    budget: int,
    *,
    strategy: str = "full",
    push: bool = True,
    seed: int | None = None,
    progress: Callable | None = None,
) -> Selection | None:
    """`iterate select`: score the unlabeled pool, choose ``budget`` frames with ``strategy``, record the round,
    write why each frame was picked and (``push``) send them to Label Studio with pre-annotations.

    Under torchrun the pool is scored in shards by every rank; rank 0 chooses, records and pushes, and the other
    ranks return None."""
    cands, notes = _check_request(m, ledger, budget, strategy, push)
    cur = current_chunk(chunk_progress(m, ledger))
    room = cur.target - cur.labeled - cur.pending
    if budget > room:
        notes.append(f"budget {budget} runs past chunk {cur.index} ({room} frames left of its {cur.target})")
    rng = np.random.default_rng(m.train.seed if seed is None else seed)
    model = scoring_model(m, ledger)
    _, rank, _ = rank_world()
    if rank != 0 and (model is None or strategy == "random"):
        return None  # nothing to shard: rank 0 does it all
    cands, pool, scored = _candidate_pool(m, ledger, model, cands, strategy, rng, notes, progress)
    if pool is None:
        return None
    if budget > len(cands):
        raise IterateError(f"--budget {budget} is larger than the readable unlabeled pool ({len(cands)} frames)")
    picked = strategies.choose(strategy, budget, pool)
    notes += picked.notes
    table = _table(cands, picked, scored, pool)
    cold = model is None and strategy != "random"
    params = {
        "budget": budget,
        "strategy": strategy,
        "cold_start": cold,
        "push": push,
        "focus": pool.focus,
        "notes": notes,
        "seed": seed,
        "scored_by": None if model is None else ("base" if is_base(model) else f"model-{model.id}"),
        "base_path": model.path if model and is_base(model) else None,
    }
    cur_id = _record_round(ledger, cur.index, budget, strategy, model, params, table)
    sel = Selection(
        int(cur_id), [r["frame_id"] for r in table], strategy, cold, table, notes, scored.scored_now if scored else 0
    )
    sel.scored_by = model_name(model) if scored is not None else None
    sel.csv, sel.markdown = _write_outputs(m, sel, scored, picked.rows)
    if push:
        sel.push = push_round(m, ledger, sel.round_id, sel.frame_ids)
    return sel


def _record_round(
    ledger: Ledger, chunk: int, budget: int, strategy: str, model: dict | None, params: dict, table: list[dict]
) -> int:
    """The round in the ledger, with each picked frame's row (less its id, path and rank)."""
    with ledger.transaction():
        return ledger.add_round(
            chunk=chunk,
            budget=budget,
            strategy=strategy,
            model_id=model.id if model else None,  # None for the base: it is not a model of the ledger
            params=params,
            frames=[
                (row["frame_id"], {k: v for k, v in row.items() if k not in ("frame_id", "path", "rank")})
                for row in table
            ],
        )


def _check_request(
    m: Manifest, ledger: Ledger, budget: int, strategy: str, push: bool
) -> tuple[list[Frame], list[str]]:
    """Refuse what cannot be selected (unknown strategy, no frames, an unfinished push, a budget past the pool);
    → the unlabeled candidates and the notes so far."""
    if strategy not in strategies.STRATEGIES:
        raise IterateError(f"--strategy must be one of {', '.join(strategies.STRATEGIES)}")
    if not ledger.frames():
        raise IterateError("no frames ingested yet: run `iterate ingest`")
    unpushed = _unpushed_round(ledger)
    if unpushed is not None and push:
        raise IterateError(
            f"round {unpushed} was selected but not fully pushed: run `iterate push --round {unpushed}` first"
        )
    cands = candidates(ledger)
    notes: list[str] = []
    if unpushed is not None:  # --no-push after a failed push: its frames stay with that round
        n = ledger.round_unhandled(unpushed)
        notes.append(
            f"round {unpushed} was selected but its push did not finish: its {n} unpushed frames stay held for it "
            f"and are not picked again (`iterate push --round {unpushed}` sends them)"
        )
    if budget <= 0:
        raise IterateError("--budget must be a positive number of frames")
    if budget > len(cands):
        raise IterateError(f"--budget {budget} is larger than the unlabeled pool ({len(cands)} frames)")
    return cands, notes


def _candidate_pool(
    m: Manifest,
    ledger: Ledger,
    model: ScoringModel | None,
    cands: list[Frame],
    strategy: str,
    rng: np.random.Generator,
    notes: list[str],
    progress,
) -> tuple[list[Frame], strategies.Pool, Scored | None]:
    """What the strategy sees, from the one pool builder (iterate/loop/pool.py): the current model's scores and
    embeddings (cold start: image features), the report's focus and the candidates' predicted strata, as the
    strategy's needs ask; unreadable frames dropped."""
    setup = selection_setup(m)
    needs = strategies.NEEDS[strategy]
    scored = None
    if "scores" not in needs:
        parts = PoolParts(len(cands), None, lambda: np.zeros((len(cands), 0)))
        return cands, build_pool(setup, strategy, parts, rng, notes), None
    if model is None:
        feats, ok = cold_start_features(m, cands, progress, notes)
        cands = [cands[i] for i in ok]
        parts = PoolParts(len(cands), None, lambda: feats)
    else:
        check_weights(setup, history=False)
        jm = joint_match(model.path, m.keypoints.names) if Path(model.path).is_file() else None
        if jm is not None:
            notes.append(
                f"{model_name(model)} predicts {jm.describe()}: uncertainty is scored over those, and its "
                "pre-annotations leave the others unplaced"
            )
        scored = score_pool(m, ledger, model, cands, progress)
        if scored is None:  # another rank of a torchrun: its shard is scored, rank 0 goes on
            return cands, None, None
        notes += scored.notes
        keep = scored.readable()
        cands, scored = [cands[i] for i in keep], scored.rows(keep)
        parts = _pool_parts(m, ledger, model, cands, scored, progress, notes)
    parts.blocked = diversity.video_neighbours(
        [f.video for f in cands], [f.frame_index for f in cands], setup.video_gap
    )
    pool = build_pool(setup, strategy, parts, rng, notes)
    if scored is not None:
        scored.scores = pool.scores
    return cands, pool, scored


def _pool_parts(m: Manifest, ledger: Ledger, model: ScoringModel, cands: list[Frame], scored: Scored, progress, notes):
    """The ledger's answers to what the pool builder may ask: labeled bodies (every split but test), image
    features, labeled embeddings, the report's focus, the candidates' predicted strata."""

    def bodies() -> list[np.ndarray]:
        return [
            np.asarray(lab.keypoints, np.float64).reshape(-1, 3)
            for _, lab in ledger.current_labels(("pool", "train", "val"))
            if lab.instance == 0
        ]

    def image_features() -> np.ndarray:
        feats, ok = cold_start_features(m, cands, progress, notes)
        emb = np.zeros((len(cands), feats.shape[1]), np.float32)
        emb[ok] = feats
        return emb

    return PoolParts(
        len(cands),
        scored,
        image_features,
        labeled_bodies=bodies,
        labeled_embeddings=lambda: _labeled_embeddings(m, ledger, model),
        focus=lambda: read_focus(m),
        no_focus_note=_no_focus_note(m),
        strata=lambda: _predict_strata(m, ledger, model, scored),
    )


def _table(cands: list[Frame], picked: strategies.Picked, scored: Scored | None, pool: strategies.Pool) -> list[dict]:
    """One row per picked frame: rank, id, path, why, its scores and predicted strata."""
    table = []
    for rank, r in enumerate(picked.rows, 1):
        f = cands[r]
        row = {"rank": rank, "frame_id": f.id, "path": f.path, "why": picked.why.get(r, "")}
        if scored is not None:
            row.update({k: round(float(v[r]), 5) for k, v in scored.scores.items()})
            row["combined"] = round(float(pool.combined[r]), 5)
        if pool.strata is not None:
            row.update({f"pred_{k}": v for k, v in pool.strata[r].items()})
        table.append(row)
    return table


def _unpushed_round(ledger: Ledger) -> int | None:
    for r in reversed(ledger.rounds()):
        if not r.params.get("push"):
            continue
        return r.id if ledger.round_unhandled(r.id) else None
    return None


def _labeled_embeddings(m: Manifest, ledger: Ledger, model: ScoringModel) -> np.ndarray | None:
    """Embeddings of labeled training frames from the cache when they were scored as pool frames."""
    d = cache_dir(m, model)
    if not (d / "index.json").is_file():
        return None
    ids = json.loads((d / "index.json").read_text())["frame_ids"]
    lab = ledger.labeled_frame_ids()
    rows = [i for i, fid in enumerate(ids) if fid in lab]
    if not rows:
        return None
    return np.asarray(np.load(d / "emb.npy", mmap_mode="r")[rows], dtype=np.float32)


def _predict_strata(m: Manifest, ledger: Ledger, model: ScoringModel, scored: Scored) -> list[dict]:
    """Predicted strata of the candidates; the occlusion threshold calibrated on labeled val frames."""
    derive = derived_strata(m)
    sp = StrataPredictor(m.strata, m.keypoints.names, derive)
    val = [(f, lab) for f, lab in ledger.current_labels(("val",)) if lab.instance == 0][:300]
    if val:
        # the calibration is cached with the model's scores: same checkpoint and same val labels → same state
        ck_path = Path(model.path)
        key = {
            "checkpoint": str(ck_path),
            "mtime": ck_path.stat().st_mtime,
            "val": [[f.id, lab.version] for f, lab in val],
            "derive": [[k, d.rule, list(d.values), list(d.thresholds)] for k, d in derive.items()],
            **boxes_stamp(ledger),
        }
        cache = cache_dir(m, model) / "strata.json"
        cached = json.loads(cache.read_text()) if cache.is_file() else {}
        if cached.get("key") == key:
            sp = StrataPredictor.from_state(m.strata, m.keypoints.names, cached["state"], derive)
        else:
            # calibrated on the same scoring path as the pool it is applied to
            pr = load_predictor(model.path, joints=m.keypoints.names, **SCORING)
            p = pr.predict(frame_samples(ledger, [f for f, _ in val]))
            sp.fit(p.keypoints, p.scores, p.embeddings, [lab.attributes for _, lab in val])
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(".strata.json.tmp")
            tmp.write_text(json.dumps({"key": key, "state": sp.state()}))
            os.replace(tmp, cache)
    return sp.predict(scored.keypoints, scored.kp_scores, scored.embeddings)


def _write_outputs(m: Manifest, sel: Selection, scored: Scored | None, rows: list[int]) -> tuple[Path, Path]:
    """The round's "why these frames" (reports/round.py) under ``<workspace>/rounds/``."""
    picks = RoundPicks(sel.round_id, sel.strategy, sel.cold_start, sel.table, sel.notes)
    if scored is not None:
        picks.scored_by = f"{sel.scored_by}: {SCORING_PATH}"
        picks.pool_scores = {name: scored.scores[name] for name in sc.NAMES}
        picks.picked_rows = list(rows)
    return write_round(m.workspace_dir / "rounds", picks)


def push_round(m: Manifest, ledger: Ledger, round_id: int, frame_ids: list[str]):
    """Push a round's frames with the round's model keypoints (box-refined, flip TTA) as pre-annotations."""
    preds, version = None, None
    model = round_model(ledger, round_id)
    if model is not None and Path(model.path).is_file():
        frames = [ledger.frame(fid) for fid in frame_ids]
        pr = load_predictor(model.path, joints=m.keypoints.names)
        p = pr.predict(frame_samples(ledger, frames))
        preds = {  # an unreadable frame has no keypoint at all; a joint the model lacks is NaN, left unplaced
            f.id: (p.keypoints[i], p.scores[i]) for i, f in enumerate(frames) if not np.isnan(p.keypoints[i]).all()
        }
        version = "iterate-base" if is_base(model) else f"iterate-model-{model.id}"
    studio = Studio.from_settings(studio_settings(m))
    try:
        return push(labeling(m), ledger, studio, frame_ids, predictions=preds, round_id=round_id, model_version=version)
    finally:
        studio.close()
