"""A simulation's outputs from its summary (:mod:`reports.simulation.statistics`): simulate.json, the learning
curves (simulate.png, simulate_effort.png) and simulate.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05


def write_outputs(summary: dict, out_dir: Path) -> None:
    """simulate.json, simulate.png and simulate.md of a summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "simulate.json").write_text(json.dumps(summary, indent=1))
    _plot(summary, out_dir / "simulate.png")
    if any("corrections" in c for c in summary["strategies"].values()):
        _plot_effort(summary, out_dir / "simulate_effort.png")
    (out_dir / "simulate.md").write_text(markdown(summary))


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    color = {s: f"C{i}" for i, s in enumerate(summary["strategies"])}  # one colour per strategy in every panel
    panels = ((PCKH05, "PCKh@0.5 (test)"), (PCKH01, "PCKh@0.1 (test)"), (f"{PCKH05}_vs_random", "PCKh@0.5 − random"))
    for ax, (key, title) in zip(axes, panels):
        for s, c in summary["strategies"].items():
            if key not in c or (key.endswith("random") and s == "random"):
                continue
            x, y = c["labels"], c[key]
            (line,) = ax.plot(x, y, marker="o", label=s, color=color[s])
            band = c.get(f"{key}_ci")
            if band:
                lo = [v if v is not None else np.nan for v in band[0]]
                hi = [v if v is not None else np.nan for v in band[1]]
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
        if key.endswith("random"):
            ax.axhline(0, color="k", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("labels")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%  (bands: 95 % over seeds)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_effort(summary: dict, path: Path) -> None:
    """Test PCKh@0.5 against the corrections revealed so far (mean over seeds): selection judged in effort."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for i, (s, c) in enumerate(summary["strategies"].items()):
        if "corrections" not in c:
            continue
        axes[0].plot(c["corrections"], c[PCKH05], marker="o", label=s, color=f"C{i}")
        axes[1].plot(c["labels"][1:], c["corrections_per_frame"], marker="o", label=s, color=f"C{i}")
    axes[0].set_xlabel("corrections so far (joints moved, added or deleted)")
    axes[0].set_ylabel("PCKh@0.5 (test)")
    axes[0].set_title("learning curve in annotator effort", fontsize=10)
    axes[1].set_xlabel("labels")
    axes[1].set_ylabel("corrections per revealed frame")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("what a frame of each round cost", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _effort_markdown(summary: dict) -> list[str]:
    arms = {s: c for s, c in summary["strategies"].items() if "corrections" in c}
    if not arms:
        return []
    L = [
        "",
        "## In annotator effort",
        "",
        "Corrections: the joints an annotator moves (more than `cost.accept_tolerance` × l off), adds or deletes "
        "starting from the round's pre-annotations (the model that selected the round, on the checkpoint's inference "
        "path; none for a cold start), counted against the hidden labels by reports/cost.py.",
        "",
        "| strategy | labels | corrections so far | per revealed frame | per picked frame | per explore frame "
        "| per frame ÷ random's (paired) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s, c in arms.items():
        vr, vci = c.get("corrections_per_frame_vs_random"), c.get("corrections_per_frame_vs_random_ci")
        ex = c.get("explore_corrections_per_frame")
        for i, n in enumerate(c["labels"][1:]):
            ratio = "" if vr is None or s == "random" else f"{vr[i]:.2f}" + (_iv([vci[0][i], vci[1][i]]) if vci else "")
            e = "–" if not ex or ex[i] is None else f"{ex[i]:.1f}"
            L.append(
                f"| {s} | {n} | {c['corrections'][i + 1]:.0f} | {c['corrections_per_frame'][i]:.1f} | "
                f"{c['picked_corrections_per_frame'][i]:.1f} | {e} | {ratio.replace('+', '')} |"
            )
    L += [
        "",
        "| strategy | corrections to reach random's final PCKh@0.5 | share of random's corrections | "
        "share of random's labels |",
        "|---|---:|---:|---:|",
    ]
    for s, c in arms.items():
        if "corrections_to_random_ratio" not in c:
            continue
        r, ci = c["corrections_to_random_ratio"], c.get("corrections_to_random_ratio_ci")
        v = c[f"corrections_to_reach_random_final_{PCKH05}"]
        lr, lci = c.get("labels_to_random_ratio"), c.get("labels_to_random_ratio_ci")
        cell = "not reached" if r is None else f"{r:.2f}" + (_iv(ci).replace("+", "") if ci else "")
        lcell = "not reached" if lr is None else f"{lr:.2f}" + (_iv(lci).replace("+", "") if lci else "")
        L.append(f"| {s} | {'not reached' if v is None else f'{v:.0f}'} | {cell} | {lcell} |")
    at = summary.get("full_effort_at_tolerance") or {}
    if at:
        L += [
            "",
            "Had annotators left joints farther off (the same runs recounted): `full` against random",
            "",
            "| joints left within | share of random's corrections to reach its final PCKh@0.5 | a `full` frame's corrections "
            "÷ random's, per round |",
            "|---:|---:|---:|",
        ]
        for tol, r in at.items():
            v, ci = r.get("corrections_to_random_ratio"), r.get("corrections_to_random_ratio_ci")
            cell = "not reached" if v is None else f"{v:.2f}" + (_iv(ci).replace("+", "") if ci else "")
            per = " / ".join("–" if x is None else f"{x:.2f}" for x in (r.get("corrections_per_frame_vs_random") or []))
            L.append(f"| {tol} × l | {cell} | {per} |")
    L += ["", "![learning curves in effort](simulate_effort.png)"]
    return L


def _iv(ci) -> str:
    if not ci:
        return ""
    lo, hi = ci
    f = lambda v: "∞" if v is None else f"{v:+.2f}" if abs(v) < 1000 else f"{v:.0f}"  # noqa: E731
    return f" [{f(lo)}, {f(hi)}]"


def _verdict(mean, ci, what: str) -> str:
    if mean is None:
        return f"{what}: not measured"
    if not ci or ci[0] is None or ci[1] is None:
        return f"{what}: {mean:+.2f} (one seed: no interval)"
    if ci[0] > 0:
        word = "helped"
    elif ci[1] < 0:
        word = "hurt"
    else:
        word = "no difference told from noise"
    return f"{what}: {mean:+.2f}{_iv(ci)} → {word}"


def _replay_note(cfg: dict) -> str:
    n = cfg.get("replay_frames", 0)
    if not n:
        return " (no replay of the base's data)"
    return (
        f", {cfg['replay_fraction']:.0%} of each fine-tune's samples drawn from {n} replayed frames of the base's data"
    )


def markdown(summary: dict) -> str:
    """simulate.md: the learning-curve and reach tables, the verdicts, the report's focus round by round, the strata
    and the effort sections."""
    L = _curve_table(summary)
    L += _reach_table(summary)
    L += ["", "## Verdicts", ""]
    L += _verdicts(summary)
    L += _focus_rounds(summary)
    L += _strata_markdown(summary)
    L += _effort_markdown(summary)
    L += ["", "![learning curves](simulate.png)", ""]
    return "\n".join(L)


def _curve_table(summary: dict) -> list[str]:
    """The heading paragraph and each arm's test figures per budget, with the paired difference to random."""
    cfg = summary["config"]
    L = [
        "# Active-learning simulation (paired)",
        "",
        f"Pool {cfg['pool']} frames (labels hidden), val {cfg['val']} (gap focus), test {cfg['test']}; rounds of "
        f"{cfg['budgets']} labels; seeds {cfg['seeds']}. For each seed every strategy starts from "
        f"`{Path(cfg['base']).name if cfg['base'] else 'scratch'}`, sees the same pool and trains with the same seed: "
        f"each round fine-tunes from the base for {cfg['steps_per_round']} steps at batch {cfg['batch_size']} on "
        f"everything revealed{_replay_note(cfg)}. Intervals: {summary['interval']}. "
        f"Wall time {summary['wall_s']:.0f} s.",
        "",
        "| strategy | labels | PCKh@0.5 | − random (paired) | PCKh@0.1 | − random (paired) | MeanSmS@0.1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s, c in summary["strategies"].items():
        for i, n in enumerate(c["labels"]):
            cell = []
            for k in (PCKH05, PCKH01):
                ci = c.get(f"{k}_ci")
                cell.append(f"{c[k][i]:.2f}" + (_iv([ci[0][i], ci[1][i]]).replace("+", "") if ci else ""))
                d = c.get(f"{k}_vs_random")
                dci = c.get(f"{k}_vs_random_ci")
                cell.append(
                    "" if d is None or s == "random" else f"{d[i]:+.2f}" + (_iv([dci[0][i], dci[1][i]]) if dci else "")
                )
            L.append(f"| {s} | {n} | {' | '.join(cell)} | {c[MEAN_SMS01][i]:.2f} |")
    return L


def _reach_table(summary: dict) -> list[str]:
    """Labels each arm needs to reach random's final PCKh@0.5, as a share of random's."""
    L = [
        "",
        "| strategy | labels to reach random's final PCKh@0.5 | share of random's labels | not reached (resamples) |",
        "|---|---:|---:|---:|",
    ]
    for s, c in summary["strategies"].items():
        if "labels_to_random_ratio" not in c:
            continue
        v, r = c[f"labels_to_reach_random_final_{PCKH05}"], c["labels_to_random_ratio"]
        ci = c["labels_to_random_ratio_ci"]
        ratio = "not reached" if r is None else f"{r:.2f}" + (_iv(ci).replace("+", "") if ci else "")
        L.append(f"| {s} | {v if v is not None else 'not reached'} | {ratio} | {c['not_reached_share']:.0%} |")
    return L


def _verdicts(summary: dict) -> list[str]:
    """One line per question the simulation answers: `full` against random, the labels goal, steering, the first
    chunk."""
    L = []
    full = summary["strategies"].get("full")
    if full and f"{PCKH05}_vs_random" in full:
        L.append(
            "- "
            + _verdict(
                full[f"{PCKH05}_vs_random"][-1],
                _col(full.get(f"{PCKH05}_vs_random_ci"), -1),
                f"`full` − random at {full['labels'][-1]} labels, test PCKh@0.5 (points)",
            )
        )
    if summary.get("full_labels_to_random_ratio") is not None or "full_labels_to_random_ratio_ci" in summary:
        r, hi = summary.get("full_labels_to_random_ratio"), summary.get("full_labels_to_random_ratio_ci_high")
        goal = "met" if (r is not None and r <= 0.6 and hi is not None and hi < 1.0) else "not met"
        L.append(
            f"- labels `full` needs for random's final figure: {'not reached' if r is None else f'{r:.2f}×'}"
            f" (upper end {'∞' if hi is None else f'{hi:.2f}×'}); goal ≤ 0.6× with the upper end < 1: **{goal}**"
        )
    return L + _steering_verdicts(summary)


def _steering_verdicts(summary: dict) -> list[str]:
    """The focus test's verdict (with the focused stratum's share of the chunks) and the first chunk's."""
    L = []
    ft = summary.get("focus_test") or {}
    if "gain_full_minus_random" in ft:
        L.append(
            "- "
            + _verdict(
                ft["gain_full_minus_random"],
                ft.get("gain_full_minus_random_ci"),
                "steering: the focused stratum's test PCKh@0.5 gain per round, `full` − random",
            )
        )
        L.append(
            f"  (the focused stratum held {ft['chunk_share_full']:.0%} of `full`'s chunks and "
            f"{ft['chunk_share_random']:.0%} of random's)"
        )
    fc = summary.get("first_chunk")
    if fc:
        L.append(
            "- "
            + _verdict(
                fc["base_minus_cold"],
                fc.get("base_minus_cold_ci"),
                f"first chunk ({fc['labels']} labels) scored by the base − cold start, test PCKh@0.5",
            )
        )
    return L


def _focus_rounds(summary: dict) -> list[str]:
    """The report's focus round by round: the focused stratum's gain under each arm and its share of the chunks."""
    ft = summary.get("focus_test") or {}
    if not ft.get("rounds"):
        return []
    L = [
        "",
        "## The report's focus, round by round",
        "",
        "| seed | round | focused stratum | gain under full | gain under random | chunk share full | chunk share random |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in ft["rounds"]:
        g = lambda v: "–" if v is None else f"{v:+.2f}"  # noqa: E731
        L.append(
            f"| {summary['seeds'][r['seed_index']]} | {r['round']} | {r['stratum']} | {g(r['gain_full'])} | "
            f"{g(r['gain_random'])} | {r['chunk_share_full']:.0%} | {r['chunk_share_random']:.0%} |"
        )
    return L


def _strata_markdown(summary: dict) -> list[str]:
    """Per stratum: each arm's mean test PCKh@0.5 round by round, and each arm − random at the final budget."""
    arms = {s: c for s, c in summary["strategies"].items() if c.get(f"strata_{PCKH05}")}
    if not arms:
        return []
    paired = [s for s, c in arms.items() if c.get(f"strata_{PCKH05}_vs_random_final")]
    L = [
        "",
        "## Where the points go: test PCKh@0.5 per stratum (mean of the seeds)",
        "",
        "Each arm's cell reads round by round from the base; a stratum the base knew can lose what a focused one "
        "gains.",
    ]
    keys = sorted({k for c in arms.values() for k in c[f"strata_{PCKH05}"]})
    for key in keys:
        head = ["stratum", *(f"{s} ({' / '.join(map(str, arms[s]['labels']))} labels)" for s in arms)]
        head += [f"{s} − random at {arms[s]['labels'][-1]}" for s in paired]
        L += ["", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        values = sorted({v for c in arms.values() for v in c[f"strata_{PCKH05}"].get(key, {})})
        for v in values:
            cells = [f"{key}={v}"]
            for s in arms:
                ys = arms[s][f"strata_{PCKH05}"].get(key, {}).get(v)
                cells.append("–" if ys is None else " / ".join("–" if y is None else f"{y:.1f}" for y in ys))
            for s in paired:
                d = arms[s][f"strata_{PCKH05}_vs_random_final"].get(key, {}).get(v)
                cells.append("–" if d is None else f"{d['mean']:+.2f}" + _iv(d["ci"]))
            L.append("| " + " | ".join(cells) + " |")
    return L


def _col(ci, i):
    return None if not ci else [ci[0][i], ci[1][i]]
