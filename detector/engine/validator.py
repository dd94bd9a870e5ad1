"""Validation: Ultralytics' detection metrics plus an independent pycocotools evaluation.

``SNNValidator`` is Ultralytics' ``DetectionValidator`` (so the trainer can use it each epoch) that
also records every prediction, scaled to original image pixels, in COCO results form. ``evaluate()``
runs it on a dataset split, then scores the same predictions with pycocotools against the split's
COCO ground truth (``coco_json`` in the dataset YAML, written by ``tools/convert.py``) and reports both.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import LOGGER

from ..infer.options import DETECT, VAL, ValOptions
from ..io.writers import coco_records


class SNNValidator(DetectionValidator):
    """Detection validator that also keeps COCO-format predictions (``self.coco_preds``).

    Runs the model in PyTorch's default memory layout unless ``channels_last`` is set: Ultralytics
    switches a loaded model to channels-last on x86 CPUs, whose convolution kernels round differently
    in the last bits, and a spiking network turns such differences into different spikes. With the
    default layout a saved model is run exactly as during training-time validation and ``detect()``.
    (The batch matters too: rect batches pad each image to its batch's shape, so the same weights
    score a little differently at another ``batch``; on the SSDD val split, 93 images, by up to 0.03
    mAP@0.5.)"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.channels_last is None:
            self.args.channels_last = False

    def init_metrics(self, model):
        super().init_metrics(model)
        self.coco_preds: list[dict[str, Any]] = []
        self.levels = LevelTally()

    def postprocess(self, preds):
        """Ultralytics' NMS (as ``DetectionValidator.postprocess``), keeping the anchor index of every kept box
        so that ``self.levels`` can tell which stride each detection came from."""
        from ultralytics.utils import nms

        outputs, kept = nms.non_max_suppression(
            preds, self.args.conf, self.args.iou, nc=0, multi_label=True,
            agnostic=self.args.single_cls or self.args.agnostic_nms, max_det=self.args.max_det, return_idxs=True)
        raw = preds[0] if isinstance(preds, (list, tuple)) else preds
        self.levels.add(outputs, kept, raw.shape[-1])
        return [{"bboxes": x[:, :4], "conf": x[:, 4], "cls": x[:, 5], "extra": x[:, 6:]} for x in outputs]

    def update_metrics(self, preds, batch):
        super().update_metrics(preds, batch)
        for si, pred in enumerate(preds):
            pbatch = self._prepare_batch(si, batch)
            predn = self.scale_preds(self._prepare_pred(pred), pbatch)
            det = torch.cat((predn["bboxes"], predn["conf"][:, None], predn["cls"][:, None]), 1).cpu().numpy()
            self.coco_preds += coco_records(det, Path(pbatch["im_file"]).name, self.names)


class LevelTally:
    """Which detection-head level (stride 8, 16, 32) each kept detection came from: per level, the
    detections scoring at least ``conf`` (detect's default threshold) and the highest score seen.

    The anchors of one image are laid out level by level, ``h w / 64``, ``h w / 256``, ``h w / 1024`` of them
    for an input of ``h x w`` (multiples of 32), i.e. 16/21, 4/21 and 1/21 of all anchors ``A``: an anchor
    index tells its level from ``A`` alone."""

    STRIDES = (8, 16, 32)

    def __init__(self, conf: float = DETECT.conf):
        self.conf = conf
        self.detections = [0, 0, 0]
        self.max_score = [0.0, 0.0, 0.0]

    @staticmethod
    def level_of(index: torch.Tensor, anchors: int) -> torch.Tensor:
        if anchors % 21:
            raise ValueError(f"{anchors} anchors do not come from strides 8/16/32 on a multiple-of-32 input")
        bounds = torch.tensor([anchors * 16 // 21, anchors * 20 // 21], device=index.device)
        return torch.bucketize(index, bounds, right=True)  # 0, 1, 2

    def add(self, outputs: list[torch.Tensor], kept: list[torch.Tensor], anchors: int) -> None:
        for det, idx in zip(outputs, kept):
            if not len(det):
                continue
            lv = self.level_of(idx.view(-1).long(), anchors)
            for k in range(3):
                s = det[lv == k, 4]
                if len(s):
                    self.detections[k] += int((s >= self.conf).sum())
                    self.max_score[k] = max(self.max_score[k], float(s.max()))

    def report(self) -> list[dict[str, Any]]:
        return [{"stride": s, "detections": n, "max_score": round(m, 4), "conf": self.conf}
                for s, n, m in zip(self.STRIDES, self.detections, self.max_score)]


def attainable_max_scores(model) -> list[float] | None:
    """Per level (stride 8, 16, 32), the largest confidence the spiking head's weights can produce for any
    class (``SpikingDetect.max_scores`` at the model's D), rounded; None for a model without that head
    (YOLOv8n, a compiled wrapper). A level whose attainable maximum sits below detect's threshold can
    find nothing, whatever the image."""
    from ..models.settings import settings_of

    head = getattr(model, "head", None)
    if not hasattr(head, "max_scores"):
        return None
    return [round(float(s.max()), 4) for s in head.max_scores(settings_of(model).levels)]


def coco_evaluate(gt_json: str | Path, predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """Score predictions (with ``file_name``) with pycocotools against COCO ground truth whose
    category ids are class index + 1. Returns overall and per-class AP@0.5 and AP@0.5:0.95."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
    by_name = {Path(im["file_name"]).name: im["id"] for im in gt.dataset["images"]}
    results, unmatched = [], set()
    for p in predictions:
        image_id = by_name.get(p["file_name"])
        if image_id is None:
            unmatched.add(p["file_name"])
            continue
        results.append({"image_id": image_id, "category_id": p["category_id"], "bbox": p["bbox"], "score": p["score"]})
    if unmatched:
        LOGGER.warning(f"{len(unmatched)} predicted images are not in {gt_json}: {sorted(unmatched)[:5]}...")
    out: dict[str, Any] = {"gt_json": str(gt_json), "images": len(gt.dataset["images"])}
    if not results:
        out.update(map50=0.0, map=0.0, per_class=[])
        return out
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out["summary"] = buf.getvalue()
    out["map"], out["map50"] = float(ev.stats[0]), float(ev.stats[1])
    precision = ev.eval["precision"]  # (iou, recall, class, area, maxdet)
    per_class = []
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        per_class.append({
            "category_id": int(cat_id), "name": gt.cats[cat_id].get("name", str(cat_id)),
            "map": float(p[p > -1].mean()) if (p > -1).any() else None,
            "map50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else None,
        })
    out["per_class"] = per_class
    return out


def evaluate(data: str | Path, weights: str | Path | None = None, options: ValOptions | None = None, *, model=None,
             **fields: Any) -> dict[str, Any]:
    """Evaluate weights (a shipped model's name or a path, run by ``runtime``: ``eager``, ``compiled`` or ``int8``,
    ``detector.infer.RUNTIMES``) or a loaded ``model`` on a dataset split; print and return the metrics.
    ``options`` is a ``ValOptions`` (or its fields as keywords: ``split="test", imgsz=320``...).

    Keys: ``precision``, ``recall``, ``map50``, ``map`` (overall), ``per_class`` (list of dicts),
    ``pycocotools`` (the independent evaluation, when the dataset has COCO ground truth) and
    ``agreement`` (absolute differences between the two evaluations; a difference above
    ``AGREEMENT_TOLERANCE`` is warned about). ``imgsz`` defaults to the size the weights were trained
    at (``ModelSettings.imgsz``).

    The model's class names must equal the dataset's, in order; ``class_map`` ({model name: dataset
    name}) renames model classes explicitly. Anything else is an error, never a silent re-labelling.
    """
    from ..infer.options import build
    from ..infer.runtime import choose_runtime, load_runtime
    from ..io.dataset_yaml import load_dataset
    from ..models.settings import settings_of
    from ..weights import resolve_weights

    o = build(ValOptions, options, weights=weights, **fields)
    weights, split, dev, class_map, json_out = o.weights, o.split, o.device, o.class_map, o.json_out
    ds = load_dataset(data, split)  # a local YAML whose split exists; nothing downloaded or run
    if model is None:
        spec = choose_runtime(o.runtime, resolve_weights(weights), dev.kind)
        if not spec.validates:
            raise ValueError(f"runtime {spec.name} runs one input shape; evaluation's batches change shape: use "
                             "--runtime eager, compiled or int8 (an ONNX export: evaluate its .pt checkpoint)")
        rt = load_runtime(weights, dev, spec.name)
        model = rt.module if spec.name == "eager" else rt.as_module()
    check_class_names(model.names, ds["names"], class_map, weights or "the model", data)
    imgsz = settings_of(model).imgsz() if o.imgsz is None else o.imgsz
    args = dict(model=str(weights or "model"), data=str(data), split=split, imgsz=imgsz, batch=o.batch, conf=o.conf,
                iou=o.iou, device=dev.ultralytics, project=str(Path(o.project).resolve()), name=o.name, plots=o.plots,
                mode="val", save_json=False, verbose=True)
    validator = SNNValidator(args=args)
    own_names = dict(model.names)
    if class_map:  # score (and report) under the dataset's names, checked equal above
        model.names = {int(k): str(v) for k, v in dict(ds["names"]).items()}
    try:
        validator(model=model)
    finally:
        model.names = own_names
    box = validator.metrics.box
    names = validator.names
    per_class = []
    idx = list(box.ap_class_index)
    for c in range(len(names)):
        if c in idx:
            i = idx.index(c)
            per_class.append({"class_id": c, "name": names[c], "precision": float(box.p[i]), "recall": float(box.r[i]),
                              "map50": float(box.ap50[i]), "map": float(box.ap[i]),
                              "instances": int(validator.metrics.nt_per_class[c])})
        else:
            per_class.append({"class_id": c, "name": names[c], "precision": None, "recall": None, "map50": None,
                              "map": None, "instances": 0})
    result: dict[str, Any] = {
        "split": split, "imgsz": int(imgsz), "images": int(validator.seen), "weights": str(weights) if weights else None,
        "precision": float(box.mp), "recall": float(box.mr), "map50": float(box.map50), "map": float(box.map),
        "per_class": per_class, "save_dir": str(validator.save_dir), "levels": validator.levels.report(),
    }
    for lv, top in zip(result["levels"], attainable_max_scores(model) or []):
        lv["attainable_max"] = top
    result.update(coco_report(validator, split, result["map50"], result["map"]))
    LOGGER.info(format_metrics(result))
    agree = result.get("agreement")
    if agree and max(agree.values()) > AGREEMENT_TOLERANCE:
        LOGGER.warning(f"Ultralytics and pycocotools disagree by {max(agree.values()):.3f} mAP (more than "
                       f"{AGREEMENT_TOLERANCE}): check the COCO ground truth {result['pycocotools']['gt_json']} against "
                       "the labels of this split")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        from ..files import atomic_write_text

        atomic_write_text(json_out, json.dumps(result, indent=2))  # written whole or not at all
    result["predictions"] = validator.coco_preds
    return result


def coco_report(validator: SNNValidator, split: str, map50: float, map_: float) -> dict[str, Any]:
    """The independent pycocotools evaluation of a finished validator's predictions against the split's
    COCO ground truth (``coco_json`` in the dataset YAML), the score distribution of its true and false
    positives, and how far the two evaluations agree; empty when the dataset has no COCO ground truth."""
    ds = validator.data  # the dataset YAML as Ultralytics resolved it (absolute ``path``)
    gt_rel = (ds.get("coco_json") or {}).get(split)
    if not gt_rel:
        return {}
    gt_path = Path(gt_rel) if Path(gt_rel).is_absolute() else Path(ds["path"]) / gt_rel
    if not gt_path.is_file():
        LOGGER.warning(f"COCO ground truth {gt_path} not found; pycocotools evaluation skipped")
        return {}
    coco = coco_evaluate(gt_path, validator.coco_preds)
    return {"pycocotools": coco, "scores": score_distribution(gt_path, validator.coco_preds),
            "agreement": {"map50_abs_diff": abs(coco["map50"] - map50), "map_abs_diff": abs(coco["map"] - map_)}}


def score_distribution(gt_json: str | Path, predictions: list[dict[str, Any]], iou: float = 0.5,
                       conf: float = VAL.conf) -> dict[str, Any]:
    """How the model's confidences spread: the scores of true positives (each prediction matched
    greedily, best score first, to an unmatched ground-truth box of its class at IoU >= ``iou``) and of
    false positives, as quantiles; ``tp_fraction_above`` the share of true positives scoring above
    0.5 / 0.7 / 0.9."""
    import numpy as np

    gt = json.loads(Path(gt_json).read_text(encoding="utf-8"))
    ids = {im["id"]: Path(im["file_name"]).name for im in gt["images"]}
    boxes: dict[tuple[str, int], list[list[float]]] = {}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.setdefault((ids[a["image_id"]], a["category_id"]), []).append([x, y, x + w, y + h])
    used: dict[tuple[str, int], set[int]] = {}
    tp, fp = [], []
    for p in sorted((p for p in predictions if p["score"] >= conf), key=lambda p: -p["score"]):
        key = (Path(p["file_name"]).name, p["category_id"])
        x, y, w, h = p["bbox"]
        best, best_iou = None, iou
        for k, (x1, y1, x2, y2) in enumerate(boxes.get(key, [])):
            if k in used.get(key, set()):
                continue
            inter = max(0.0, min(x + w, x2) - max(x, x1)) * max(0.0, min(y + h, y2) - max(y, y1))
            u = w * h + (x2 - x1) * (y2 - y1) - inter
            if u > 0 and inter / u >= best_iou:
                best, best_iou = k, inter / u
        if best is None:
            fp.append(p["score"])
        else:
            used.setdefault(key, set()).add(best)
            tp.append(p["score"])
    def quantiles(v: list[float]) -> dict[str, float] | None:
        if not v:
            return None
        return {f"p{k}": float(np.percentile(v, k)) for k in (10, 25, 50, 75, 90)} | {"max": float(max(v))}

    return {"iou": iou, "ground_truth": sum(len(v) for v in boxes.values()), "true_positives": len(tp),
            "false_positives": len(fp), "tp_scores": quantiles(tp), "fp_scores": quantiles(fp),
            "tp_fraction_above": {str(t): (sum(s > t for s in tp) / len(tp) if tp else None) for t in (0.5, 0.7, 0.9)}}


AGREEMENT_TOLERANCE = 0.02  # mAP; well above the agreement measured on real data (README, "Results on SSDD")


def check_class_names(model_names: dict, data_names: dict, class_map: dict[str, str] | None, model_src, data_src) -> None:
    """Refuse to score a model against a dataset whose class names differ (after ``class_map``)."""
    m = {int(k): str(v) for k, v in dict(model_names).items()}
    d = {int(k): str(v) for k, v in dict(data_names).items()}
    if class_map:
        unknown = sorted(set(class_map) - set(m.values()))
        if unknown:
            raise ValueError(f"--map names classes the model does not have: {unknown} (model classes: {list(m.values())})")
        m = {k: class_map.get(v, v) for k, v in m.items()}
    if m != d:
        raise ValueError(f"class names differ: model {model_src} has {m}, dataset {data_src} has {d}; scoring "
                         "would re-label classes silently. Use matching data, or --map MODEL_NAME=DATASET_NAME")


def format_metrics(r: dict[str, Any]) -> str:
    """A printable table of the overall and per-class metrics."""
    fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
    lines = [f"{'class':>20s} {'inst':>6s} {'P':>6s} {'R':>6s} {'mAP50':>6s} {'mAP50-95':>8s}",
             f"{'all':>20s} {sum(c['instances'] for c in r['per_class']):6d} {fmt(r['precision'])} {fmt(r['recall'])} "
             f"{fmt(r['map50'])} {fmt(r['map']):>8s}"]
    for c in r["per_class"]:
        lines.append(f"{c['name'][:20]:>20s} {c['instances']:6d} {fmt(c['precision'])} {fmt(c['recall'])} "
                     f"{fmt(c['map50'])} {fmt(c['map']):>8s}")
    if r.get("scores") and r["scores"]["tp_scores"]:
        sc = r["scores"]
        lines.append(f"true-positive scores (IoU {sc['iou']}): median {sc['tp_scores']['p50']:.3f}, p90 "
                     f"{sc['tp_scores']['p90']:.3f}, max {sc['tp_scores']['max']:.3f}; "
                     f"{sc['tp_fraction_above']['0.5']:.0%} above 0.5")
    if r.get("levels"):
        lv = r["levels"]
        lines.append(f"detections at conf >= {lv[0]['conf']} by level: " + ", ".join(
            f"stride {x['stride']}: {x['detections']} (max score {x['max_score']:.3f}"
            + (f", attainable {x['attainable_max']:.3f})" if "attainable_max" in x else ")") for x in lv))
    if "pycocotools" in r:
        co = r["pycocotools"]
        lines.append(f"pycocotools: mAP50 {co['map50']:.4f}  mAP50-95 {co['map']:.4f}  "
                     f"(|diff| vs Ultralytics: {r['agreement']['map50_abs_diff']:.4f} / {r['agreement']['map_abs_diff']:.4f})")
    return "\n".join(lines)


__all__ = ["SNNValidator", "evaluate", "attainable_max_scores", "coco_evaluate", "format_metrics", "check_class_names"]
