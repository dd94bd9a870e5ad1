"""Distributed data parallel on CPU: two processes (gloo) train the same small SNN-ViT-YOLO on
different data with Ultralytics' detection loss and must end with identical weights.

What DDP guarantees and what this checks:

* parameters: every backward all-reduces (averages) the gradients, and both ranks start from the same
  weights and run the same optimizer, so their parameters stay bit-identical;
* BatchNorm buffers (running mean / var, batch count) are not gradients. Each rank updates them from
  its own batch in every train-mode forward, so they drift apart. With ``broadcast_buffers=True``
  (PyTorch's default) DDP copies rank 0's buffers to every rank at the start of each forward; after
  the last training forward they differ again, and one more forward (eval mode, which does not
  update them) makes them identical. Ultralytics' trainer wraps with ``broadcast_buffers=False``:
  buffers then stay per-rank and only rank 0's are saved in checkpoints; both settings are checked.

Spiking neurons keep no state between calls (reset inside every call), so there is no neuron state
for DDP to synchronise.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from _tiny import tiny_config

WORLD = 2
STEPS = 3
TINY = tiny_config(nc=2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_batch(rank: int, step: int) -> dict[str, torch.Tensor]:
    """A different batch for every rank and step: random images, 3 boxes of random size and class."""
    g = torch.Generator().manual_seed(1000 * rank + step)
    B = 2
    xy = 0.25 + 0.5 * torch.rand(3, 2, generator=g)
    wh = 0.1 + 0.3 * torch.rand(3, 2, generator=g)
    return {"img": torch.rand(B, 3, 64, 64, generator=g), "batch_idx": torch.tensor([0.0, 1.0, 1.0]),
            "cls": torch.randint(0, 2, (3, 1), generator=g).float(), "bboxes": torch.cat([xy, wh], 1)}


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One DDP rank: build, train STEPS steps on its own data, save what the test compares."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)  # two ranks on a 2-core machine
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        import detector  # noqa: F401
        from detector.models import SNNViTYOLO
        from ultralytics.cfg import get_cfg

        result: dict[str, object] = {}
        for broadcast in (True, False):
            torch.manual_seed(0)  # same initial weights on every rank
            model = SNNViTYOLO(TINY, verbose=False)
            model.args = get_cfg()  # box / cls / dfl gains of v8DetectionLoss
            init = {k: v.clone() for k, v in model.state_dict().items()}
            ddp = DDP(model, broadcast_buffers=broadcast)
            opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
            ddp.train()
            losses = []
            for step in range(STEPS):
                loss, _ = ddp(rank_batch(rank, step))  # DetectionModel.forward(dict) -> model.loss(batch)
                opt.zero_grad()
                loss.sum().backward()  # DDP all-reduces the gradients here
                opt.step()
                losses.append(float(loss.detach().sum()))
            after_train = {k: v.clone() for k, v in model.state_dict().items()}
            ddp.eval()
            with torch.no_grad():
                ddp(rank_batch(rank, 99)["img"])  # with broadcast_buffers: rank 0's buffers arrive here
            result[f"broadcast={broadcast}"] = {"init": init, "after_train": after_train,
                                               "final": {k: v.clone() for k, v in model.state_dict().items()},
                                               "losses": losses}
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    ctx = mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 240
    try:
        while not ctx.join(timeout=2):  # re-raises a rank's exception with its traceback
            if time.monotonic() > deadline:
                pytest.fail("DDP ranks did not finish within 240 s")
    finally:
        for p in ctx.processes:  # only on failure are any still alive
            if p.is_alive():
                p.terminate()
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _buffers(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model_state.items() if "running_" in k or "num_batches_tracked" in k}


@pytest.mark.slow
@pytest.mark.parametrize("broadcast", [True, False])
def test_ranks_end_with_identical_parameters(ranks, broadcast):
    r0, r1 = (r[f"broadcast={broadcast}"] for r in ranks)
    # Same start, different data: the ranks' losses differ, so the check below is not trivial.
    assert all(torch.equal(r0["init"][k], r1["init"][k]) for k in r0["init"])
    assert r0["losses"] != r1["losses"]
    from detector.models import SNNViTYOLO

    params = {n for n, _ in SNNViTYOLO(TINY, verbose=False).named_parameters()}
    assert params and params <= set(r0["final"])
    for k in params:
        assert torch.equal(r0["final"][k], r1["final"][k]), f"{k} differs between ranks"
    # The weights moved. Exceptions: the frozen DFL projection, and the P4 / P5 box branches: at 64 px
    # Ultralytics' assigner gives every box to P3 anchors (at initialisation predicted boxes are ~15
    # strides wide; see test_detector.py), so those branches get an exactly-zero gradient.
    unchanged = sorted(k for k in params if torch.equal(r0["final"][k], r0["init"][k]))
    assert "model.2.dfl.conv.weight" in unchanged
    assert all(k == "model.2.dfl.conv.weight" or k.startswith(("model.2.cv2.1.", "model.2.cv2.2.")) for k in unchanged)
    assert len(unchanged) < 0.2 * len(params), unchanged


@pytest.mark.slow
def test_bn_buffers_with_and_without_broadcast(ranks):
    b0, b1 = (r["broadcast=True"] for r in ranks)
    n0, n1 = (r["broadcast=False"] for r in ranks)
    buf = _buffers(b0["final"])
    assert any("running_var" in k for k in buf)
    # After training each rank's last forward updated the statistics from its own batch: they differ.
    assert any(not torch.equal(b0["after_train"][k], b1["after_train"][k]) for k in buf if "running_" in k)
    # broadcast_buffers=True: the eval forward received rank 0's buffers, so now every buffer matches.
    assert all(torch.equal(b0["final"][k], b1["final"][k]) for k in buf)
    assert all(torch.equal(b0["final"][k], b0["after_train"][k]) for k in buf)  # rank 0 kept its own
    # broadcast_buffers=False (Ultralytics' setting): buffers stay per rank, parameters still agree.
    assert any(not torch.equal(n0["final"][k], n1["final"][k]) for k in buf if "running_" in k)
    assert all(torch.equal(n0["final"][k], n1["final"][k]) for k in buf if "num_batches_tracked" in k)
    # The running statistics moved away from their initial values (the buffers are live).
    assert any(not torch.equal(b0["final"][k], b0["init"][k]) for k in buf if "running_mean" in k)
