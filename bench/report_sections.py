"""The benchmarks page's section per measurement: each one's table and the text that says how it was measured.

Each section renders only what its run measured (and the backends it could not run), so a page of
one section, or of a run saved by an older version, reads as whole. How a figure is written in a
cell (`ratio_text`, `met_text`, ...) and the figures derived from a section's results
(`family_means`, `multistream_fps`, ...) live here too, as the goals table (bench/report_goals.py)
shows the same figures the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run import Results


#: The tracking row of PyTorch with ultralytics' own whole-input masks (``fast_masks=False``).
PLAIN_MASKS = "pytorch-plain-masks"
#: What a goal's "reached" says where the run had nothing to score it on (too short a run).
NOTHING_SCORED = "nothing to score"
BACKEND_NAMES = {
    "pytorch": "PyTorch",
    "onnx": "ONNX Runtime",
    "openvino": "OpenVINO",
    PLAIN_MASKS: "PyTorch, ultralytics' masks",
}


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def ratio_text(value: float, goal: float) -> str:
    """``value`` as a ratio, with a third decimal where two would round it onto the goal's line."""
    shown = f"{value:.2f}x"
    return f"{value:.3f}x" if shown == f"{goal:.2f}x" and value != goal else shown


def ratio_with_spread(row: dict[str, Any], key: str, goal: float) -> str:
    """A mean ratio and, where there were several rounds, the lowest and highest round."""
    low, high = row.get(f"{key}_range", (row[key], row[key]))
    shown = ratio_text(row[key], goal)
    return shown if len(row.get("rounds", ())) < 2 else f"{shown} (rounds {low:.2f}-{high:.2f})"


def ms_text(value: float | None) -> str:
    """A latency in whole ms; "-" where none was measured (no frame reached the viewer then)."""
    return "-" if value is None else f"{value:.0f}"


def met_text(ok: bool | None) -> str:
    return "n/a" if ok is None else "yes" if ok else "**no**"


def cross_backend(throughput: dict[str, dict[str, Any]]) -> str | None:
    """The best backend, where segcast on it is also compared with the seed loop on the `.pt` file."""
    if not throughput:
        return None
    best = max(throughput, key=lambda b: throughput[b]["segcast_fps"])
    return best if "pytorch" in throughput and best != "pytorch" else None


def has_truth(row: dict[str, Any]) -> bool:
    """Whether a tracking score had truth to score against. Runs saved before that was recorded: an
    occlusion seed's id recall has a band for every truth box, so none means no box; otherwise yes."""
    if "truth_boxes" in row:
        return bool(row["truth_boxes"])
    return bool(row.get("bands", True))


def busy_ratio(row: dict[str, Any], key: str, goal: float) -> tuple[float, str]:
    """A busy-scene ratio and how it is shown: the mean of the rounds' ratios with their spread; a run
    saved before those were recorded has segcast's mean fps over the as-written seed loop's only."""
    if key in row:
        return row[key], ratio_with_spread(row, key, goal)
    ratio = row["fast_fps"] / row["seed_fps"]
    return ratio, ratio_text(ratio, goal)


def multistream_backends(results: Results) -> list[str]:
    """Backends of the multi-stream runs, in run order (runs saved before backends were recorded: PyTorch)."""
    return list(dict.fromkeys(r.get("backend", "pytorch") for r in results.multistream))


def multistream_fps(results: Results, backend: str) -> dict[tuple[int, int], float]:
    """The mean fps of each (streams, max_batch) over its rounds (one in runs saved before rounds)."""
    runs: dict[tuple[int, int], list[float]] = {}
    for r in results.multistream:
        if r.get("backend", "pytorch") == backend:
            runs.setdefault((r["streams"], r["max_batch"]), []).append(r["fps"])
    return {key: sum(fps) / len(fps) for key, fps in runs.items()}


def _skipped_note(results: Results, section: str) -> list[str]:
    """The backends ``section`` asked for and could not run, and why (a section not run asked for none)."""
    skipped = results.skipped.get(section, {})
    return [*(f"- {BACKEND_NAMES[b]} skipped: {why}" for b, why in skipped.items()), ""] if skipped else []


def _throughput_section(results: Results) -> list[str]:
    if not results.throughput and not results.skipped.get("throughput"):
        return []
    header = ["backend", "seed loop fps: as written", "like for like", "segcast fps", "vs as written"]
    header += ["vs like for like", "forward ms", "share of limit", "ceiling"]
    rows = []
    for backend, r in results.throughput.items():
        like = r.get("like_fps")
        rows.append(
            [
                BACKEND_NAMES[backend],
                f"{r['seed_fps']:.1f}",
                "-" if like is None else f"{like:.1f}",
                f"{r['segcast_fps']:.1f}",
                f"**{ratio_with_spread(r, 'ratio', 0.0)}**",
                "-" if like is None else f"**{ratio_with_spread(r, 'like_ratio', 0.0)}**",
                f"{r['forward_ms']:.1f}",
                f"{r['share']:.2f}",
                f"{1000 / r['seed_fps'] / r['forward_ms']:.2f}x",
            ]
        )
    for backend, reason in results.skipped.get("throughput", {}).items():
        rows.append([BACKEND_NAMES[backend], *["-"] * (len(header) - 2), f"skipped: {reason}"])
    s = results.settings
    across = (
        f" The goal of segcast on {BACKEND_NAMES[cross]} against the seed loop on the `.pt` file is the one "
        "ratio taken across rounds: its two mean fps come from different backends' rounds, measured one after "
        "the other, so it has no spread and a machine that slowed in between moves it."
        if (cross := cross_backend(results.throughput))
        else ""
    )
    return [
        "## Throughput: one file as fast as possible, annotated JPEG out",
        "",
        f"The seed loop (bench/seed_loop.py: `model.track(persist=True)`, `result.plot()`, JPEG) and segcast "
        f"(a `#rate=max` file source through the reader, inference and encoder threads, annotated JPEG of every "
        f"frame) on the same model file and the same {s.get('frames')} frames, {s.get('rounds')} round(s) per "
        "backend, each case in a fresh process, the three sides of a round back to back (who goes first "
        f"changes from round to round){_warmup_words(s)}. A ratio is segcast's fps over the seed loop's in the "
        f"same round; the table gives the mean and, in brackets, the lowest and highest round.{across} The seed "
        "loop runs two ways. "
        "*As written* is what users run: ultralytics' defaults. *Like for like* gives it segcast's tracker, "
        "thresholds and NMS, so what is left between the two is the pipeline. Each side's settings:",
        "",
        *_settings_table(s),
        "",
        "Share of the limit is segcast's fps times the forward pass alone (the network on one preprocessed "
        "frame, timed in the same process right before and after): 1.0 would mean nothing but the network. "
        "No pipeline can run one stream faster than one forward pass per frame, so the ceiling column, the "
        "as-written seed loop's time per frame over the forward pass, is the highest ratio any one-stream "
        "pipeline could reach on that backend.",
        "",
        *table(header, rows),
        "",
    ]


def _settings_table(settings: dict[str, Any]) -> list[str]:
    """The seed loops' and segcast's settings, side by side, as the throughput and busy-scene sections compare them."""
    compared = settings.get("compared", {})
    keys = list(next(iter(compared.values()), {}))
    rows = [[side, *(f"`{row[k]}`" if k == "call" else row[k] for k in keys)] for side, row in compared.items()]
    return table(["side", *keys], rows)


def _warmup_words(settings: dict[str, Any]) -> str:
    """How many frames each side processed untimed, as the throughput and busy-scene texts say it."""
    frames = settings.get("warmup_frames")
    if frames is None:  # runs saved before both sides left the same number untimed
        return "; the seed loop left its first frame untimed, segcast its first 5"
    return f"; each side processes {frames} frames untimed first, and both start the file again if it ends"


def family_means(occlusion: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per tracker: its mean IDF1, HOTA and MOTA over the family's seeds, and its total id switches.

    The means are over the seeds with truth to score (a short run may see no object on some); a
    seed without has no score, which is not a score of 0. With none, the means are NaN.
    """
    means = {}
    for kind, seeds in occlusion["trackers"].items():
        scored = [s for s in seeds if has_truth(s)]
        means[kind] = {
            key: sum(s[key] for s in scored) / len(scored) if scored else float("nan")
            for key in ("idf1", "hota", "mota")
        }
        means[kind]["switches"] = sum(s["switches"] for s in seeds)
    return means


def _occlusion_section(results: Results) -> list[str]:
    occlusion = results.occlusion
    if not occlusion:
        return []
    means = family_means(occlusion)
    rows = []
    for kind, seeds in sorted(occlusion["trackers"].items(), key=lambda item: -means[item[0]]["idf1"]):
        name = f"**{kind}** (default)" if kind == occlusion["default"] else kind
        rows.append(
            [
                name,
                " / ".join(f"{s['idf1']:.3f}" if has_truth(s) else "-" for s in seeds),
                *(_score(means[kind][key]) for key in ("idf1", "hota", "mota")),
                " / ".join(str(s["switches"]) for s in seeds),
                " / ".join(_band_recalls(seeds)),
                f"{occlusion['cost_ms'][kind]:.2f}",
            ]
        )
    s = results.settings
    seeds = ", ".join(str(seed) for seed in occlusion["seeds"])
    header = ["tracker", f"IDF1, seeds {seeds.replace(', ', ' / ')}", "mean IDF1", "mean HOTA", "mean MOTA"]
    header += ["ID switches per seed", "id recall: visible / partly / mostly hidden", "ms per frame, crowded scene"]
    return [
        "## Tracking through occlusion: every tracker on the occlusion family",
        "",
        f'`Scene(family="occlusion")` on seeds {seeds} (never seen in the model\'s training or validation), the '
        f"first {s.get('track_frames')} frames each, the model at its own size, every frame. The model runs once "
        "per frame at the lowest confidence any tracker takes and every tracker gets the same detections, as "
        "streams sharing a batch do in the worker; each keeps its own thresholds and segcast's defaults "
        "otherwise (a track reported from its first detection at conf 0.25 on). Scored by "
        "tools/track_report.py against the scene's truth: "
        "HOTA as TrackEval computes it; id recall per band is the share of an object's boxes covered by the "
        "track IDF1 paired it with, by how much of the object is visible (at least 90 %, 50 to 90 %, under "
        f"50 %). The last column is each tracker's own time per frame (outlines already traced) on "
        f"{s.get('busy_frames')} frames of a crowded 720p scene at {s.get('busy_imgsz')} (the busy scene with "
        f"more objects), about {occlusion['cost_objects']:.0f} objects a frame, one process: the fastest of "
        f"{occlusion.get('cost_rounds', 1)} rounds, the trackers' order reversed each round. A seed with no "
        'object in its frames has no score ("-"), and the means leave it out.',
        "",
        *table(header, rows),
        "",
    ]


def _score(value: float) -> str:
    """A mean score; "-" where no seed had one (NaN)."""
    return "-" if math.isnan(value) else f"{value:.3f}"


def _band_recalls(seeds: list[dict[str, Any]]) -> list[str]:
    """Each visibility band's id recall, averaged over the seeds with boxes in it ("-" where none has).

    A short run may reach a band on some seeds only (an occlusion scene starts with its objects
    apart); a seed with no box in a band has no recall there, which is not a recall of 0.
    """
    from tools.track_report import BANDS

    shown = []
    for name, _ in BANDS:
        recalls = [s["bands"][name] for s in seeds if name in s["bands"]]
        shown.append(f"{sum(recalls) / len(recalls):.2f}" if recalls else "-")
    return shown


def analytics_totals(analytics: dict[str, Any]) -> dict[str, int]:
    keys = ("true_crossings", "found_crossings", "extra_crossings", "scored_visits", "visits_within")
    return {key: sum(seed[key] for seed in analytics["seeds"]) for key in keys}


def share_of(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _analytics_section(results: Results) -> list[str]:
    analytics = results.analytics
    if not analytics:
        return []
    rows = []
    for seed in [*analytics["seeds"], {"seed": "all", **analytics_totals(analytics)}]:
        rows.append(
            [
                str(seed["seed"]),
                str(seed["true_crossings"]),
                f"{seed['found_crossings']} ({share_of(seed['found_crossings'], seed['true_crossings']):.1%})",
                str(seed["extra_crossings"]),
                str(seed["scored_visits"]),
                f"{seed['visits_within']} ({share_of(seed['visits_within'], seed['scored_visits']):.1%})",
            ]
        )
    header = ["seed", "true crossings", "counted right", "extra (wrong or double)", "visits"]
    header.append(f"dwell within {analytics['dwell_tolerance_s']:g} s")
    return [
        "## Zones and lines against the truth",
        "",
        "tools/analytics_report.py's layout (10 lines: five rows, three columns, a bent line, a centroid-anchored "
        "line; 6 zones) on generated scenes the model never saw, through the real worker, tracker and analytics "
        "with segcast's defaults, compared with the truth the same rules give on the objects' exact masks "
        "(docs/analytics.md says how). A crossing counts when the object that made it is counted crossing "
        "the same line the same way within 8 frames; true crossings too near the run's end for such a count "
        "to be confirmed in it are left out, and so are counts that match none while a true crossing they "
        "could match might still have been unconfirmed at the end.",
        "",
        *table(header, rows),
        "",
    ]


def _tracking_section(results: Results) -> list[str]:
    heading = ["## Tracking quality per backend", ""]
    if not results.tracking:
        return heading + _skipped_note(results, "tracking") if results.skipped.get("tracking") else []
    rows = [
        [
            BACKEND_NAMES[b],
            *((f"{r[key]:.3f}" if has_truth(r) else "n/a") for key in ("idf1", "mota")),
            str(r["switches"]),
            f"{r['ms_per_frame']:.0f}",
        ]
        for b, r in results.tracking.items()
    ]
    s = results.settings
    return [
        *heading,
        f"tools/track_report.py's scoring (segcast's own per-stream tracker against the scene's exact ground "
        f"truth) on {s.get('track_frames')} frames of scene seed {s.get('track_seed')}: a faster backend must "
        "not track worse. With no object in the frames scored, IDF1 and MOTA are n/a.",
        "",
        *table(["backend", "IDF1", "MOTA", "ID switches", "ms per frame"], rows),
        "",
        *_skipped_note(results, "tracking"),
    ]


def _masks_section(results: Results) -> list[str]:
    heading = ["## Mask post-processing: a busy scene", ""]
    if not results.masks:
        return heading + _skipped_note(results, "masks") if results.skipped.get("masks") else []
    rows = []
    for backend, r in results.masks.items():
        like = r.get("like_fps")
        rows.append(
            [
                BACKEND_NAMES[backend],
                f"{r['seed_fps']:.1f}",
                "-" if like is None else f"{like:.1f}",
                f"{r['plain_fps']:.1f}",
                f"{r['fast_fps']:.1f}",
                f"**{_busy_spread(r, 'fast_vs_plain')}**",
                busy_ratio(r, "ratio", 0.0)[1],
                "-" if like is None else busy_ratio(r, "like_ratio", 0.0)[1],
            ]
        )
    s = results.settings
    header = ["backend", "seed loop fps: as written", "like for like", "segcast, ultralytics' masks"]
    header += ["segcast fps", "fast vs plain", "vs as written", "vs like for like"]
    scene = (
        f"The seed loop and segcast on {s.get('busy_video')}, at imgsz {s.get('busy_imgsz')}, "
        f"{s.get('busy_frames')} frames each, {s.get('rounds')} round(s), each case in a fresh process"
    )
    own = (
        "its default, which makes each mask only inside its box from the model's prototypes "
        "(server/inference/outlines.py; tests/test_outlines.py checks the outlines are the same)"
    )
    plain = (
        "ultralytics' own masks (each detection's mask made over the whole input, then cropped and traced; "
        "`fast_masks = false`)"
    )
    tracker = next((r["tracker"] for r in results.masks.values() if "tracker" in r), None)
    if tracker is None:  # a run saved before the busy scene was compared as the throughput section is
        text = (
            f"{scene}, the three in the same order every round: the seed loop as written (the throughput "
            "section's table gives its settings), and segcast, running the stream's default tracker, with "
            f"{plain} and with {own}{_warmup_words(s)}. Fast vs plain is the mean of the rounds' ratios; vs as "
            "written is segcast's mean fps over the seed loop's."
        )
    else:
        text = (
            f"{scene}, the four sides of a round back to back (who goes first, and the order of any two, changes "
            "from round to round)"
            f"{_warmup_words(s)}. As in the throughput section, with the settings of its table: the seed loop as "
            f"written and like for like; segcast running `{tracker}` with {plain}, and with {own}. A ratio is "
            "taken within each round; the table gives its mean and, in brackets, the lowest and highest round."
        )
        if not results.throughput:  # that table is not on this page: the sides' settings here
            text += "\n\n" + "\n".join(_settings_table(s))
    return [*heading, text, "", *table(header, rows), "", *_skipped_note(results, "masks")]


def _busy_spread(row: dict[str, Any], key: str) -> str:
    """A busy-scene ratio of the rounds with its spread, or as a run saved before the spread was kept has it."""
    return ratio_with_spread(row, key, 0.0) if f"{key}_range" in row else f"{row[key]:.2f}x"


def _multistream_section(results: Results) -> list[str]:
    heading = ["## Multi-stream: aggregate fps, batched against one at a time", ""]
    if not results.multistream:
        return heading + _skipped_note(results, "multistream") if results.skipped.get("multistream") else []
    rows = []
    for backend in multistream_backends(results):
        by = multistream_fps(results, backend)
        for streams in sorted({streams for streams, _ in by}):
            batched, single = by.get((streams, 8)), by.get((streams, 1))
            gain = f"{batched / single:.2f}x" if batched and single else "-"
            rows.append(
                [
                    BACKEND_NAMES[backend],
                    str(streams),
                    f"{batched:.1f}" if batched else "-",
                    f"{single:.1f}" if single else "-",
                    gain,
                ]
            )
    return [
        *heading,
        f"N copies of the file as `#rate=max` streams, metadata only (no JPEG), "
        f"{results.settings.get('stream_frames')} frames per stream; `max_batch=8` against `max_batch=1`, "
        "each the mean of the run's rounds, which alternate which of the two goes first.",
        "",
        *table(["backend", "streams", "batched fps", "one-at-a-time fps", "gain"], rows),
        "",
        *_skipped_note(results, "multistream"),
    ]


def _latency_section(results: Results) -> list[str]:
    if not results.latency:
        return []
    rows = [
        [
            str(r.streams),
            f"{r.seconds:.0f}",
            "-" if r.offered_fps is None else f"{r.offered_fps:.1f}",
            f"{r.processed_fps:.1f}",
            "-" if r.dropped_share is None else f"{r.frames_dropped} ({r.dropped_share:.0%})",
            f"{r.p50_ms:.0f}",
            f"{r.p95_ms:.0f}",
            f"{ms_text(r.first_p50_ms)} -> {ms_text(r.last_p50_ms)}",
            "yes" if r.flat else "**no**",
            f"{r.rss_mb[0][1]:.0f} -> {r.rss_mb[-1][1]:.0f} ({r.rss_growth:+.1%})",
        ]
        for r in results.latency
    ]
    header = ["streams", "seconds", "offered fps", "processed fps", "dropped frames", "p50 ms", "p95 ms"]
    header += ["p50 first -> last third", "flat", "RSS MiB, first -> last sample (last tenth's mean vs first's)"]
    return [
        "## Latency and memory: cameras at their real rate",
        "",
        "A `segcast serve` process with N looping copies of the file at its native 15 fps (like cameras), and "
        "one WebSocket viewer of all of them in this process. Latency runs from a frame's capture time (its "
        "decode) to its annotated JPEG arriving at the viewer. The first 5 s are warm-up and left out. "
        "Latency is only of the frames processed: offered fps is what the cameras' readers decoded, and the "
        "frames the pipeline dropped unprocessed (a stream's waiting frame replaced by a newer one before "
        'inference took it: `frames_dropped` in /api/streams) have no latency; "-" where the run did not record '
        "them.",
        "",
        *table(header, rows),
        "",
    ]


def _fanout_section(results: Results) -> list[str]:
    if not results.fanout:
        return []
    rows = [
        [
            str(p.viewers),
            f"{p.server_cpu:.2f}",
            f"{p.processed_fps:.1f}",
            f"{p.mean_viewer_fps:.1f}",
            f"{p.min_share:.0%}",
        ]
        for p in results.fanout
    ]
    return [
        "## Fan-out: WebSocket viewers of one stream",
        "",
        f"One camera-rate stream, N viewers of its annotated frames, {results.settings.get('fanout_s', 0):.0f} s "
        "each after 5 s of warm-up. Server CPU is the `segcast serve` process's CPU time over wall time "
        "(1.0 = one core busy). The viewers run in the benchmark process on the same cores, so at 100 viewers "
        "they compete with the server for CPU.",
        "",
        *table(["viewers", "server CPU (cores)", "processed fps", "mean fps per viewer", "worst viewer's share"], rows),
        "",
    ]


#: The measured sections in the order the page shows them, after the machine and its conditions.
MEASURED_SECTIONS = (
    _throughput_section,
    _tracking_section,
    _occlusion_section,
    _analytics_section,
    _masks_section,
    _multistream_section,
    _latency_section,
    _fanout_section,
)
