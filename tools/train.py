#!/usr/bin/env python
"""Train SNN-ViT-YOLO on a dataset YAML (Ultralytics engine).

    python tools/train.py --data data/ssdd/data.yaml --model n --epochs 100 --imgsz 512 --batch 16 --timesteps 4
    python tools/train.py --resume runs/train/exp/weights/last.pt
    python tools/train.py --data DATA.yaml --model s --device 0,1     # multi-GPU through Ultralytics' DDP
    python tools/train.py --data DATA.yaml --timesteps 1 --neuron ilif --max-spikes 4 --teacher yolov8n-teacher.pt
"""

import argparse

import _bootstrap  # noqa: F401

import detector  # noqa: F401
from detector.engine.distill import DistillWeights
from detector.engine.train_options import TrainOptions
from detector.engine.trainer import train
from detector.nn.neurons import neuron_defaults

MAX_SPIKES = neuron_defaults("ilif")["max_spikes"]  # --neuron ilif's D when --max-spikes is not given


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="dataset YAML (written by tools/convert.py)")
    _bootstrap.add_options(ap, TrainOptions)  # --model, --epochs, --imgsz, --batch, --device, --timesteps, --project...
    ap.add_argument("--no-amp", action="store_true",
                    help="train in fp32 (default: mixed precision: fp16 on CUDA, bf16 on a CPU with native bf16, "
                         "e.g. AVX512-BF16 or AMX; other CPUs run fp32)")
    ap.add_argument("--neuron", choices=["lif", "if", "ilif"], default=None,
                    help="replace the config's neuron: lif / if (binary spikes) or ilif (integer spikes, "
                         "expanded into binary events at inference)")
    ap.add_argument("--max-spikes", type=int, default=None,
                    help=f"D, the largest spike count of --neuron ilif (default {MAX_SPIKES})")
    ap.add_argument("--readout", choices=["spikes", "current"], default=None,
                    help="how the head's branches end (default: the model config's): spikes (bounded logits) or "
                         "current (the last layer's input current, folded into one synaptic conv at inference)")
    ap.add_argument("--cls-prior", default=None, metavar="P|none",
                    help="initial class probability of the head (e.g. 0.01), or none for Ultralytics' rule "
                         "(default: the model config's)")
    ap.add_argument("--teacher", default=None, help="distil from this teacher file (written by tools/train_baseline.py); "
                                                     "a resumed run keeps its own --kd-* weights unless given again")
    _bootstrap.add_options(ap, DistillWeights)  # --kd-cls, --kd-box, --kd-temperature, --kd-feat
    ap.add_argument("--resume", nargs="?", const=True, default=False, help="resume the latest run or a last.pt")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patience", type=int, default=100)
    ap.add_argument("--lr0", type=float, default=None, help="initial learning rate (default: Ultralytics' auto)")
    ap.add_argument("--optimizer", default="auto", help="auto (Ultralytics' choice), SGD, AdamW, ...")
    ap.add_argument("--momentum", type=float, default=None, help="SGD momentum / Adam beta1 (default 0.937)")
    ap.add_argument("--warmup-bias-lr", type=float, default=None,
                    help="learning rate of the biases at the start of warmup (default 0.1; Ultralytics' auto "
                         "optimizer sets 0 for short runs)")
    ap.add_argument("--close-mosaic", type=int, default=None,
                    help="last epochs without mosaic (default 10; with --resume: change the checkpoint's)")
    ap.add_argument("--copy-paste", type=float, default=None, metavar="P",
                    help="copy-paste augmentation, probability per image (default 0: off): objects of another training "
                         "image pasted in; box-only labels (SSDD) paste box patches with their surroundings")
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args(argv)
    if not a.resume and not a.data:
        ap.error("--data is required unless --resume is given")
    if a.max_spikes is not None and a.neuron != "ilif":
        ap.error("--max-spikes needs --neuron ilif")
    neuron = None
    if a.neuron == "ilif":
        neuron = {"name": "ilif", "max_spikes": MAX_SPIKES if a.max_spikes is None else a.max_spikes}
    elif a.neuron:
        neuron = {"name": a.neuron}
    kd = {k: getattr(a, k) for k in DistillWeights.names() if hasattr(a, k)}  # the --kd-* given
    if kd and not a.teacher:
        ap.error("--kd-* set distillation weights; they need --teacher")
    # the weights not given: a resumed run's own (SNNTrainer.on_resume), else DistillWeights' defaults
    distill = {"teacher": a.teacher, **kd} if a.teacher else None
    extra = dict(workers=a.workers, seed=a.seed, patience=a.patience, optimizer=a.optimizer,
                 close_mosaic=10 if a.close_mosaic is None else a.close_mosaic, plots=not a.no_plots)
    for key in ("lr0", "momentum", "warmup_bias_lr", "copy_paste"):
        if getattr(a, key) is not None:
            extra[key] = getattr(a, key)
    if a.resume:  # the checkpoint's arguments, except the few a resumed run may change
        extra = {} if a.close_mosaic is None else {"close_mosaic": a.close_mosaic}
    if a.resume and (getattr(a, "timesteps", None) is not None or neuron or a.readout or a.cls_prior):
        ap.error("--timesteps / --neuron / --readout / --cls-prior cannot change a resumed run")
    prior = a.cls_prior
    if prior is not None and prior != "none":
        try:
            prior = float(prior)
        except ValueError:
            ap.error(f"--cls-prior must be a probability or none, got {a.cls_prior!r}")
    options = _bootstrap.options(TrainOptions, a, resume=a.resume, neuron=neuron, distill=distill, amp=not a.no_amp,
                                 model_changes={"readout": a.readout, "cls_prior": prior}, overrides=extra)
    t = train(a.data, options=options)
    print(f"run folder: {t.save_dir}\nbest: {t.best}\nlast: {t.last}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))
