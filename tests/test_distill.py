"""Distillation from an ANN teacher (``detector.engine.distill``): the loss is zero exactly when the
student's head outputs equal the teacher's and positive otherwise; the teacher is frozen (no parameter
changes during training, eval mode); teacher files are plain data with an allow-listed architecture,
and anything else is refused with one line; a short real training run with ``--teacher`` logs the
distillation terms."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import detector  # noqa: F401
from detector.engine.distill import Distiller, distill_losses, feature_loss, head_outputs, load_teacher, make_adapters
from detector.weights import UnsafeCheckpointError, save_ann_checkpoint
from _ssdd_subset import read_results_csv


def yolov8n(nc: int = 1, seed: int = 0):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    return DetectionModel("yolov8n.yaml", nc=nc, verbose=False)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_ann_checkpoint(path, yolov8n(), "yolov8n.yaml", {0: "ship"})
    return path


def random_heads(B=2, nc=3, A=84, reg_max=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, nc, A, generator=g) * 3, torch.randn(B, 4 * reg_max, A, generator=g) * 3


def test_loss_is_zero_for_equal_outputs_and_positive_otherwise():
    s, b = random_heads()
    for tau in (1.0, 2.0):
        cls, box = distill_losses(s, b, s.clone(), b.clone(), 16, tau)
        assert cls.abs() < 1e-6 and box.abs() < 1e-6
        t_s, t_b = random_heads(seed=1)
        cls, box = distill_losses(s, b, t_s, t_b, 16, tau)
        assert cls > 0.01 and box > 0.01
        cls_only, box_same = distill_losses(s + 0.5, b, s, b, 16, tau)  # classes differ, boxes equal
        assert cls_only > 0 and box_same.abs() < 1e-6


def test_feature_loss_is_zero_when_the_adapted_student_matches_and_trains_both():
    """Identity adapters and student maps equal to the teacher's standardised maps: loss 0; otherwise > 0,
    with gradients reaching the student's maps and the adapters."""
    g = torch.Generator().manual_seed(0)
    t_feats = [torch.randn(2, c, s, s, generator=g) * 3 + 1 for c, s in ((4, 8), (6, 4), (8, 2))]
    adapters = make_adapters([4, 6, 8], [4, 6, 8])
    with torch.no_grad():
        for a in adapters:
            a.weight.copy_(torch.eye(a.in_channels).view(a.out_channels, a.in_channels, 1, 1))
            a.bias.zero_()
    s_exact = [(t - t.mean((0, 2, 3), keepdim=True)) / (t.std((0, 2, 3), keepdim=True) + 1e-6) for t in t_feats]
    assert feature_loss(s_exact, t_feats, adapters) < 1e-10
    s_feats = [torch.rand(x.shape, generator=g).requires_grad_() for x in t_feats]
    loss = feature_loss(s_feats, t_feats, adapters)
    assert loss > 0.1
    loss.backward()
    assert all(s.grad.abs().sum() > 0 for s in s_feats) and all(a.weight.grad.abs().sum() > 0 for a in adapters)
    with pytest.raises(ValueError, match="levels"):
        feature_loss(s_feats[:2], t_feats, adapters)


def test_loss_rejects_heads_that_do_not_match():
    s, b = random_heads(A=84)
    t_s, t_b = random_heads(A=80)
    with pytest.raises(ValueError, match="differ"):
        distill_losses(s, b, t_s, t_b, 16)


def test_gradient_flows_to_the_student_only(teacher_file):
    teacher = load_teacher(teacher_file)
    d = Distiller(teacher)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        t = head_outputs(teacher, img)
    student = {"scores": (t["scores"] + 0.3).requires_grad_(), "boxes": (t["boxes"] - 0.2).requires_grad_()}
    kd = d.losses(student, img, reg_max=16)
    kd.sum().backward()
    assert student["scores"].grad.abs().sum() > 0 and student["boxes"].grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    exact = d.losses({"scores": t["scores"], "boxes": t["boxes"]}, img, reg_max=16)
    assert exact.abs().max() < 1e-6


def test_teacher_files_are_plain_data_and_checked(tmp_path, teacher_file):
    assert load_teacher(teacher_file).names == {0: "ship"}
    marker = tmp_path / "ran.txt"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "snnvit-yolo-ann", "payload": Evil()}, evil)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_teacher(evil)
    assert not marker.exists()

    ck = torch.load(teacher_file, weights_only=True)
    for field, value, msg in (("arch", "../evil.yaml", "architecture"), ("nc", 10**9, "nc"),
                              ("names", {0: 1}, "names"), ("format", "other", "format")):
        bad = dict(ck, **{field: value})
        p = tmp_path / f"bad_{field}.pt"
        torch.save(bad, p)
        with pytest.raises(ValueError, match=msg):
            load_teacher(p)
    wrong_nc = tmp_path / "nc2.pt"
    torch.save(dict(ck, nc=2, names={0: "a", 1: "b"}), wrong_nc)
    with pytest.raises(ValueError, match="do not fit"):
        load_teacher(wrong_nc)
    with pytest.raises(FileNotFoundError):
        load_teacher(tmp_path / "missing.pt")


def test_weights_are_checked():
    with pytest.raises(ValueError, match="cls_weight"):
        Distiller(yolov8n(), cls_weight=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        Distiller(yolov8n(), temperature=0.0)


@pytest.mark.slow
def test_short_training_with_a_teacher(ssdd_subset: Path, teacher_file: Path, tmp_path: Path):
    from detector.engine.trainer import train

    digest = hashlib.sha256(teacher_file.read_bytes()).hexdigest()
    t = train(ssdd_subset, model="n", epochs=1, imgsz=160, batch=8, timesteps=1, project=tmp_path, name="kd",
              neuron={"name": "ilif", "max_spikes": 4}, distill={"teacher": str(teacher_file), "cls_weight": 1.0,
                                                                  "box_weight": 0.5, "feat_weight": 1.0},
              workers=0, plots=False, seed=0, mosaic=0.0, close_mosaic=0, val=True, verbose=False, amp=False)
    rows = read_results_csv(Path(t.save_dir) / "results.csv")
    assert float(rows[0]["train/kd_cls"]) > 0 and float(rows[0]["train/kd_box"]) > 0
    assert float(rows[0]["train/kd_feat"]) > 0  # neck-feature distillation through the adapters
    assert hashlib.sha256(teacher_file.read_bytes()).hexdigest() == digest
    fresh = load_teacher(teacher_file)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), t.distiller.teacher.state_dict().values()))
    ck = torch.load(t.last, weights_only=True)
    assert ck["distill"]["teacher_sha256"] == digest and ck["distill"]["box_weight"] == 0.5
    assert not any(k.startswith("teacher") for k in ck["state_dict"])  # no teacher weight in the student file
    # the adapters are training state: in the training checkpoint, in the optimizer, not in the model
    assert ck["distill"]["feat_weight"] == 1.0 and len(ck["distill_adapters"]) == 6
    assert len(ck["optimizer"]["param_groups"]) == 4
    assert not any("adapter" in k for k in ck["state_dict"])
    trained = {k: v for k, v in t.distiller.adapters.state_dict().items()}
    assert all(torch.equal(trained[k].cpu(), v) for k, v in ck["distill_adapters"].items())
    assert ck["config"]["neuron"] == {"name": "ilif", "max_spikes": 4}


def test_bad_teacher_or_weights_fail_before_training(tmp_path, teacher_file):
    from detector.engine.trainer import train

    with pytest.raises(FileNotFoundError):
        train("unused.yaml", distill={"teacher": str(tmp_path / "none.pt")})
    with pytest.raises(ValueError, match="box_weight"):
        train("unused.yaml", distill={"teacher": str(teacher_file), "box_weight": -2})
    with pytest.raises(ValueError, match="multi-GPU"):
        train("unused.yaml", device="0,1", distill={"teacher": str(teacher_file)})


def test_resume_keeps_the_runs_distillation_weights_unless_named_again():
    """``--resume X --teacher T`` keeps X's stored weights (feature distillation included) for every --kd-* not
    given again, and the stored adapters are handed on; a weight named again wins."""
    from types import SimpleNamespace

    from detector.engine.trainer import SNNTrainer

    stored = {"teacher": "/somewhere/else.pt", "teacher_sha256": "a" * 64, "cls_weight": 0.5, "box_weight": 2.0,
              "temperature": 3.0, "feat_weight": 1.5}
    ckpt = {"distill": stored, "distill_adapters": {"0.weight": torch.zeros(1)}}
    stub = SimpleNamespace(distill_args={"teacher": "t.pt", "box_weight": 0.25})
    SNNTrainer.on_resume(stub, ckpt, "last.pt")
    assert stub.distill_args == {"teacher": "t.pt", "box_weight": 0.25, "teacher_sha256": "a" * 64, "cls_weight": 0.5,
                                 "temperature": 3.0, "feat_weight": 1.5, "adapters_state": ckpt["distill_adapters"]}
