"""Model commands: `retrain`, `predict`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from iterate.commands._options import DEFAULT, ManifestOpt, console, open_project, progress_bar, read_manifest
from iterate.core.errors import IterateError
from iterate.core.images import printable
from iterate.core.metric_keys import PCKH01, PCKH05

if TYPE_CHECKING:
    from iterate.loop.retrain import RetrainOutcome

# -- retrain's options
EpochsOpt = Annotated[int | None, typer.Option(help="epochs (default: train.epochs)")]
FromOpt = Annotated[
    Path | None,
    typer.Option("--from", help="checkpoint to start from (default: last round's model, else model.base)"),
]
FreezeOpt = Annotated[str | None, typer.Option(help="none | all_but_stage4 | comma-separated trunk modules")]
HeatmapSizeOpt = Annotated[
    int | None, typer.Option("--heatmap-size", help="heatmap side (e.g. 64 or 96 for a 256 input)")
]
ResumeOpt = Annotated[bool, typer.Option(help="continue an interrupted retrain from its last checkpoint")]
AllowPartialOpt = Annotated[bool, typer.Option("--allow-partial", help="load a checkpoint that only partly fits")]
MinutesOpt = Annotated[
    float | None,
    typer.Option(
        help="a cap on the wall time: stop after this many minutes even if train.epochs are not done (the "
        "schedule follows it); the run may end sooner when its epochs are done; must be > 0"
    ),
]

# -- predict's options
ImagesArg = Annotated[list[Path], typer.Argument(help="image files or folders")]
ModelOpt = Annotated[Path, typer.Option("--model", help="an iterate checkpoint")]
PredsOutOpt = Annotated[Path, typer.Option("--out", help="COCO results JSON to write")]
CocoIdsOpt = Annotated[
    Path | None, typer.Option("--coco", help="take image ids from this COCO file (matched by file name)")
]
FlipOpt = Annotated[
    bool | None,
    typer.Option("--flip/--no-flip", help="flip test-time augmentation (default: as the checkpoint records)"),
]
RefineOpt = Annotated[
    bool | None,
    typer.Option(
        "--refine/--no-refine",
        help="second pass on the person box the first pass found (default: as the checkpoint records)",
    ),
]
HeadUpOpt = Annotated[
    bool | None,
    typer.Option("--head-up/--no-head-up", help="head-up rotated second pass (default: as the checkpoint records)"),
]
BoxHeadOpt = Annotated[
    bool | None,
    typer.Option(
        "--box-head/--no-box-head",
        help="refine on the box head's person box too, where the model has one (default: as the checkpoint records)",
    ),
]
RefinePassesOpt = Annotated[
    int | None,
    typer.Option(
        "--refine-passes",
        help="refine passes, each re-boxed on the last (2: +0.4 PCKh@0.5 with a box head at 1.5× the time; "
        "default: as the checkpoint records)",
    ),
]
BatchSizeOpt = Annotated[int, typer.Option(help="frames per batch")]
LocaliseOpt = Annotated[
    str | None,
    typer.Option(
        "--localise",
        help="frame: the first pass crops the whole frame; box_head: the person box the model's box head finds "
        "first (people who do not fill the frame; default: as the checkpoint records)",
    ),
]
BboxFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--bbox-file",
        help="COCO detection results (image_id, bbox, score; MMPose's bbox_file): each image's most confident "
        "person box is the first pass's crop (needs --coco for the ids)",
    ),
]
PredictDetectorOpt = Annotated[
    Path | None,
    typer.Option(
        "--detector",
        help="a torchvision detector's weights file (state dict; nothing is downloaded): its most confident "
        "person box of each image is the first pass's crop",
    ),
]
DetectorArchOpt = Annotated[str, typer.Option("--detector-arch", help="the detector's torchvision architecture")]
DetectorScoreOpt = Annotated[float, typer.Option("--detector-score", help="a person box's minimum score")]
JointsManifestOpt = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        "-m",
        help="write this manifest's joints in its order, matched to the checkpoint's by name (default: the "
        "checkpoint's own joints)",
    ),
]
DETECTOR_ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"


def retrain(
    manifest: ManifestOpt = DEFAULT,
    epochs: EpochsOpt = None,
    from_: FromOpt = None,
    freeze: FreezeOpt = None,
    heatmap_size: HeatmapSizeOpt = None,
    resume: ResumeOpt = False,
    allow_partial: AllowPartialOpt = False,
    minutes: MinutesOpt = None,
) -> None:
    """Fine-tune the model on the ledger's labeled frames, keep the best by val PCKh@0.1, record it.

    Example: iterate retrain --epochs 20 --from base.pt --freeze all_but_stage4
    """
    from iterate.loop.retrain import retrain as run

    m, ledger = open_project(manifest, write=True, command="iterate retrain")
    with (
        ledger,
        progress_bar(info=True) as bar,
    ):
        task = bar.add_task("retrain", total=None, info="")
        last = {"val": ""}

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, info=f"loss {loss:.3f} {last['val']}")

        def on_epoch(rec: dict) -> None:
            if PCKH01 in rec:
                last["val"] = f"val PCKh@0.1 {rec[PCKH01]:.1f} %  @0.5 {rec[PCKH05]:.1f} %"
            bar.console.print(f"epoch {rec['epoch'] + 1}: loss {rec['loss']:.3f} {last['val']}", highlight=False)

        out = run(
            m,
            ledger,
            epochs=epochs,
            init=from_,
            freeze=freeze,
            heatmap_size=heatmap_size,
            resume=resume,
            allow_partial=allow_partial,
            time_limit_s=minutes * 60 if minutes is not None else None,
            on_step=on_step,
            on_epoch=on_epoch,
        )
    if out is not None:
        _print_retrain(out, minutes)


def _print_retrain(out: RetrainOutcome, minutes: float | None) -> None:
    """The new model: how its start loaded, skipped images, its metrics, time, notes and tracking run."""
    from reports.report import duration

    if out.load_report:
        console.print(f"start: {out.load_report}", highlight=False)
    for p in out.bad_images:
        console.print(f"[yellow]skipped unreadable training image:[/] {escape(p)}", highlight=False, soft_wrap=True)
    t = Table(title=f"model #{out.model_id}: {out.path}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in out.metrics.items():
        if k != "best_pick":  # a sentence: printed below
            t.add_row(k, f"{v:.2f}" if isinstance(v, float) else str(v))
    console.print(t)
    secs = out.metrics.get("seconds")
    if isinstance(secs, (int, float)):
        cap = f" (cap {minutes:g} min)" if minutes is not None else ""
        console.print(
            f"trained {out.metrics.get('steps', '?')} steps in {duration(secs)}{cap}", highlight=False, soft_wrap=True
        )
    for note in out.notes:
        console.print(f"[yellow]{escape(note)}[/]", highlight=False, soft_wrap=True)
    if out.tracking:
        tr = out.tracking
        console.print(
            f"{tr.get('backend', 'MLflow')} run {tr['run_id']} (experiment {escape(tr['experiment'])}, store {escape(tr['store'])})",
            highlight=False,
            soft_wrap=True,
        )


def _check_predict_options(batch_size: int, localise: str | None, refine_passes: int | None) -> None:
    if batch_size < 1:
        raise IterateError("--batch-size must be ≥ 1")
    if localise not in (None, "frame", "box_head"):
        raise IterateError(f"--localise must be frame or box_head, got {localise!r}")
    if refine_passes is not None and not 1 <= refine_passes <= 4:
        raise IterateError(f"--refine-passes must be 1 to 4, got {refine_passes}")


def predict(
    images: ImagesArg,
    model: ModelOpt,
    out: PredsOutOpt = Path("preds.json"),
    coco: CocoIdsOpt = None,
    flip: FlipOpt = None,
    refine: RefineOpt = None,
    head_up: HeadUpOpt = None,
    box_head: BoxHeadOpt = None,
    refine_passes: RefinePassesOpt = None,
    batch_size: BatchSizeOpt = 32,
    localise: LocaliseOpt = None,
    bbox_file: BboxFileOpt = None,
    detector: PredictDetectorOpt = None,
    detector_arch: DetectorArchOpt = DETECTOR_ARCH,
    detector_score: DetectorScoreOpt = 0.5,
    manifest: JointsManifestOpt = None,
) -> None:
    """Predict keypoints for images and write COCO results (image_id, category_id, keypoints, score).

    Runs the checkpoint's own inference path (the one `retrain` picked it with and `report` scores it with);
    --no-flip / --no-refine / --no-head-up / --no-box-head opt out. A model with a box head also writes each
    frame's person box (``bbox``).

    Example: iterate predict --model .iterate/models/model-002/best.pt frames/ --out preds.json
    """
    from model.predict import predict_files

    _check_predict_options(batch_size, localise, refine_passes)
    notes: list[str] = []
    n, bad, path = predict_files(
        model,
        images,
        out,
        coco=coco,
        flip=flip,
        refine=refine,
        head_up=head_up,
        box_head=box_head,
        refine_passes=refine_passes,
        batch_size=batch_size,
        joints=read_manifest(manifest, check_sources=False).keypoints.names if manifest else None,
        localise=localise,
        bbox_file=bbox_file,
        detector=(detector_arch, detector, detector_score) if detector else None,
        notes=notes,
    )
    for note in notes:
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    for p in bad:
        console.print(
            f"[yellow]skipped unreadable, too large or degenerate:[/] {escape(printable(p))}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"wrote {n} predictions to {out} ({path})", highlight=False, soft_wrap=True)


def detect(
    images: Annotated[list[Path], typer.Argument(help="image files or folders (searched recursively)")],
    detector: Annotated[
        Path,
        typer.Option("--detector", help="a torchvision detector's weights file (state dict; nothing is downloaded)"),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="the COCO detection-results JSON to write")],
    detector_arch: DetectorArchOpt = DETECTOR_ARCH,
    detector_score: Annotated[
        float,
        typer.Option(
            "--detector-score",
            help="a person box's minimum score (ingest counts a person from 0.3 whatever is written)",
        ),
    ] = 0.3,
    relative_to: Annotated[
        Path | None,
        typer.Option(
            "--relative-to",
            help="write file names relative to this folder (a source's `path`; default: the folder given)",
        ),
    ] = None,
) -> None:
    """Find the people in images with a detector and write them as COCO detection results: the file a source's
    ``person_boxes`` reads, so the loop crops on each frame's most confident person.

    Example: iterate detect footage/cam1 --detector fasterrcnn.pt --out footage/cam1_people.json
    """
    from model.detect import PersonDetector, write_detections
    from model.predict import check_out, image_files

    files = image_files(images)
    check_out(out, files)
    root = relative_to or (images[0] if len(images) == 1 and images[0].is_dir() else None)
    if root is not None:  # absolute, not resolved: a folder of symlinked images keeps its own names
        outside = [f for f in files if not f.absolute().is_relative_to(root.absolute())]
        if outside:
            raise IterateError(f"--relative-to {root}: {outside[0]} is not inside it")
        files = [root / f.absolute().relative_to(root.absolute()) for f in files]
    det = PersonDetector(detector_arch, detector, score=detector_score)
    found, n, several, bad = write_detections(det, files, root, out)
    for p in bad:
        console.print(f"[yellow]skipped unreadable:[/] {escape(printable(p))}", highlight=False, soft_wrap=True)
    console.print(
        f"wrote {n} person detections to {out}: a person in {found} of {len(files) - len(bad)} images, {several} with "
        "several people (give the file as the source's person_boxes)",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain)
    app.command("predict")(predict)
    app.command("detect")(detect)
