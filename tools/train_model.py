"""Train the bundled demo/test model on stills from the scene generator's two families.

Reproduces ``server/data/segcast-scene-seg.pt`` from nothing but this repository and ultralytics'
own model yaml: no download, no external data. CI never runs this; it is here so anyone can check
where the shipped weights came from and rebuild them.

    python tools/train_model.py --out server/data/segcast-scene-seg.pt

Training runs in stages: ``--epochs`` from the architecture yaml with ultralytics' default
augmentation (mosaic included), then ``--polish-rounds`` rounds of ``--polish-epochs`` each, every
one starting from the previous stage's best weights with mosaic off, so the last epochs see whole
frames like the ones the model will run on; each round restarts the learning-rate schedule, which
kept improving the validation mAP where one longer schedule had flattened. ``--start-from`` skips stage
one and polishes the given weights. On 2 otherwise idle CPU cores the defaults take about an hour.

Three splits per family, from disjoint scene seeds: *train*; *val*, which ultralytics uses to pick
each stage's best weights and which chose the schedule, so it is not held out; and *test*, which
neither saw: the mAP to quote. The bundled model was trained on the "wander" family alone, which the
defaults reproduce. ``--occlusion-train-images N`` adds N stills of the "occlusion" family to training
(and its val split to choosing the weights), where detection fails trackers: objects passing behind
one another merged into one box or the hidden one dropped. Half of each occlusion seed's stills are
drawn from frames where one object hides part of another, since random frames of that family mostly
show one standing object. Tried from the bundled weights (one 16-epoch polish round with 240 such
stills): held-out mask mAP50 went up on both families (0.917 -> 0.935, occlusion 0.898 -> 0.920) and
so did recall on partly hidden objects, but tracking IDF1 on the occlusion scenes moved by seed, up
on some and down on others, so the bundled weights were kept. Seeds below 100 stay out of every
split: the tests and docs/benchmarks.md score on them. ``--evaluate WEIGHTS`` measures given weights
on every val and test split without training:

    python tools/train_model.py --evaluate server/data/segcast-scene-seg.pt
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/train_model.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np

from server.scene import CLASS_NAMES, Scene, TrueObject

TRAIN_SEEDS = range(100, 140)
VAL_SEEDS = range(900, 910)
#: Never used to train, to pick weights or to tune the schedule.
TEST_SEEDS = range(2000, 2020)
OCCLUSION_TRAIN_SEEDS = range(300, 340)
OCCLUSION_VAL_SEEDS = range(950, 960)
#: Held out like TEST_SEEDS.
OCCLUSION_TEST_SEEDS = range(2100, 2120)
#: A visible share below this marks an object partly hidden by a nearer one.
HIDDEN_SHARE = 0.97


def polygon_of(truth: TrueObject, width: int, height: int) -> np.ndarray | None:
    """The largest outline of the visible mask, normalised to 0..1 as YOLO labels want."""
    contours, _ = cv2.findContours(truth.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)
    if len(contour) < 3:
        return None
    return contour / np.array([width, height])


def write_split(root: Path, split: str, seeds: range, count: int, family: str = "wander") -> None:
    """Write ``count`` stills spread over the given seeds, with YOLO segmentation labels.

    A split an earlier run left in the same ``--workdir`` is kept if its manifest, written once the
    stills are, says it was made from the same seeds, count and family (the seeds make it identical);
    any other, or one a run stopped part-way through, is written anew.
    """
    images, labels = root / "images" / split, root / "labels" / split
    manifest = root / f"{split}.split.json"
    made_with = {"seeds": [seeds.start, seeds.stop, seeds.step], "count": count, "family": family}
    if manifest.is_file() and json.loads(manifest.read_text()) == made_with:
        return
    manifest.unlink(missing_ok=True)
    for folder in (images, labels):
        shutil.rmtree(folder, ignore_errors=True)
    labels.with_suffix(".cache").unlink(missing_ok=True)  # ultralytics' index of the old labels
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    _write_stills(images, labels, seeds, count, family, np.random.default_rng(len(split)))
    manifest.write_text(json.dumps(made_with) + "\n")


def _write_stills(images: Path, labels: Path, seeds: range, count: int, family: str, rng: np.random.Generator) -> None:
    per_seed = max(1, count // len(seeds))
    written = 0
    for seed in seeds:
        if family == "wander":
            scene = Scene(seed=seed, objects_per_period=10)
            indices = [int(i) for i in rng.choice(scene.period_frames * 2, size=per_seed, replace=False)]
        else:
            scene = Scene(seed=seed, family=family)
            indices = occlusion_frames(scene, per_seed, rng)
        for index in indices:
            image, truths = scene.render(index)
            name = f"{seed}_{index:05d}"
            cv2.imwrite(str(images / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            lines = []
            for truth in truths:
                polygon = polygon_of(truth, scene.width, scene.height)
                if polygon is not None:
                    coords = " ".join(f"{v:.5f}" for v in polygon.ravel())
                    lines.append(f"{truth.class_id} {coords}")
            (labels / f"{name}.txt").write_text("\n".join(lines) + "\n")
            written += 1
            if written >= count:
                return


def occlusion_frames(scene: Scene, count: int, rng: np.random.Generator) -> list[int]:
    """``count`` frames of the first two periods with something in view, half with an object partly hidden.

    Every other frame is a candidate (neighbours look alike). Frames where an object is hidden are
    drawn first, then the rest from every frame with an object in view, without repeats.
    """
    shown: list[int] = []
    hiding: list[int] = []
    for index in range(0, scene.period_frames * 2, 2):
        shares = scene.visibility(index)
        if shares:
            shown.append(index)
        if len(shares) > 1 and any(share < HIDDEN_SHARE for share in shares.values()):
            hiding.append(index)
    picked = [int(i) for i in rng.choice(hiding, size=min(len(hiding), count // 2), replace=False)]
    rest = [index for index in shown if index not in picked]
    picked += [int(i) for i in rng.choice(rest, size=min(len(rest), count - len(picked)), replace=False)]
    return sorted(picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("server/data/segcast-scene-seg.pt"))
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--test-images", type=int, default=100)
    parser.add_argument(
        "--occlusion-train-images", type=int, default=0, help="occlusion-family stills to train on as well (try 240)"
    )
    parser.add_argument("--occlusion-val-images", type=int, default=50)
    parser.add_argument("--occlusion-test-images", type=int, default=100)
    parser.add_argument("--evaluate", type=Path, default=None, metavar="WEIGHTS", help="only measure these weights")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--polish-epochs", type=int, default=20)
    parser.add_argument("--polish-rounds", type=int, default=2)
    parser.add_argument("--start-from", type=Path, default=None, help="stage-one weights: polish these only")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the dataset and run here (else a temporary folder, removed)"
    )
    args = parser.parse_args()
    if args.workdir is not None:
        train_and_report(args, args.workdir)
        return
    with tempfile.TemporaryDirectory(prefix="segcast-train-") as scratch:  # hundreds of MB after a training
        train_and_report(args, Path(scratch))


def train_and_report(args: argparse.Namespace, workdir: Path) -> None:
    """Write the dataset into ``workdir``, train there (unless only evaluating) and print the mAPs."""
    from ultralytics import YOLO

    data_root = workdir / "data"
    write_split(data_root, "val", VAL_SEEDS, args.val_images)
    write_split(data_root, "test", TEST_SEEDS, args.test_images)
    write_split(data_root, "val-occlusion", OCCLUSION_VAL_SEEDS, args.occlusion_val_images, "occlusion")
    write_split(data_root, "test-occlusion", OCCLUSION_TEST_SEEDS, args.occlusion_test_images, "occlusion")
    splits = ("val", "val-occlusion", "test", "test-occlusion")
    if args.evaluate is not None:
        report(args.evaluate, data_root, splits, args.imgsz)
        return
    write_split(data_root, "train", TRAIN_SEEDS, args.train_images)
    train, val = ["train"], ["val"]
    if args.occlusion_train_images > 0:
        write_split(data_root, "train-occlusion", OCCLUSION_TRAIN_SEEDS, args.occlusion_train_images, "occlusion")
        train, val = [*train, "train-occlusion"], [*val, "val-occlusion"]
    data_yaml = data_file(workdir / "scene.yaml", data_root, train, val, "test")

    common = {
        "data": str(data_yaml),
        "imgsz": args.imgsz,
        "batch": 16,
        "workers": 2,
        "device": "cpu",
        "plots": False,
        "amp": False,
        "seed": 0,
        "deterministic": True,
        "project": str(workdir / "runs"),
        "exist_ok": True,
    }
    stage_one = args.start_from
    if stage_one is None:
        YOLO("yolov8n-seg.yaml").train(epochs=args.epochs, name="scene", **common)
        stage_one = workdir / "runs" / "scene" / "weights" / "best.pt"
    best = stage_one
    for round_ in range(1, args.polish_rounds + 1):
        name = f"polish{round_}"
        YOLO(str(best)).train(epochs=args.polish_epochs, mosaic=0.0, close_mosaic=0, name=name, **common)
        best = workdir / "runs" / name / "weights" / "best.pt"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    report(args.out, data_root, splits, args.imgsz)


def data_file(path: Path, data_root: Path, train: list[str], val: list[str], test: str | None = None) -> Path:
    """An ultralytics dataset yaml over the given image folders (lists mix the families' stills)."""
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASS_NAMES))
    lines = [f"path: {data_root}", f"train: {[f'images/{s}' for s in train]}", f"val: {[f'images/{s}' for s in val]}"]
    if test is not None:
        lines.append(f"test: images/{test}")
    path.write_text("\n".join(lines) + f"\nnames:\n{names}\n")
    return path


def report(weights: Path, data_root: Path, splits: tuple[str, ...], imgsz: int) -> None:
    """Print the mAPs of ``weights`` on each split: the val ones picked the weights, the test ones are held out."""
    from ultralytics import YOLO

    for split in splits:
        data_yaml = data_file(data_root.parent / f"scene-{split}.yaml", data_root, [split], [split])
        metrics = YOLO(str(weights)).val(data=str(data_yaml), imgsz=imgsz, device="cpu", plots=False)
        print(
            f"{split}: mask mAP50 {metrics.seg.map50:.3f}  mask mAP50-95 {metrics.seg.map:.3f}  "
            f"box mAP50 {metrics.box.map50:.3f}"
        )


if __name__ == "__main__":
    main()
