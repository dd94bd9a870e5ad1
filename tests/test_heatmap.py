"""SSSA heatmaps (``detector.analysis.heatmap``, ``tools/heatmap.py``): token -> pixel geometry against
hand-computed boxes on a non-square letterboxed image, hooks that capture the right tensors and are
always removed, salience that concentrates on image content, panels and .npz files that decode.

Model used: SNN-ViT-YOLO-n, untrained, seed 0, at 256 px (one shared forward for most tests). At
default batch-norm statistics its spikes die before the SSSA stages (salience exactly 0), so its
batch-norm statistics are calibrated on three *other* scenes first (``untrained_model``); no weight
is trained. Concentration measure: (share of the time- and head-averaged salience mass, in original
pixels, that lies inside the content square) / (the square's share of the image area). 1 = no
preference. Measured for seeds 0-4: 2.2-3.6 for every block (seed 0: 2.84 / 2.66 / 2.15 for
p4.0 / p4.1 / p5.0; every single timestep 1.75-4.7); the test asks for >= 1.5 in every block.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from ultralytics.utils import ops

from detector.analysis.heatmap import (
    SSSACapture,
    find_sssa_blocks,
    grid_to_image,
    heatmap_image,
    panel_figsize,
    render_panel,
    save_npz,
    select_blocks,
    untrained_model,
)
from detector.io.letterbox import Letterbox, letterbox_tensor

REPO = Path(__file__).resolve().parents[1]
H0, W0, IMGSZ = 192, 256, 256  # non-square: letterboxed with 32 px bands at top and bottom
SQUARE = (16, 96, 144, 240)  # y0, y1, x0, x1 of the content, in original pixels


def scene(box, bg: int, seed: int) -> np.ndarray:
    """Flat background with one bright textured square (grey BGR)."""
    rng = np.random.default_rng(seed)
    img = np.full((H0, W0, 3), bg, np.uint8)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1] = rng.integers(120, 255, (y1 - y0, x1 - x0, 1)).astype(np.uint8)
    return img


def no_hooks(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture(scope="module")
def model():
    calib = [scene((100, 180, 10, 100), 60, 1), scene((20, 90, 20, 110), 30, 2), scene((90, 170, 150, 250), 80, 3)]
    m, label = untrained_model("n", seed=0, calib_images=calib, imgsz=IMGSZ)
    assert "UNTRAINED" in label
    return m


@pytest.fixture(scope="module")
def result(model):
    return heatmap_image(model, scene(SQUARE, 40, 0), IMGSZ, conf=0.25, source="square.png", label="untrained")


# ------------------------------------------------------------------------------------------ geometry


def test_letterbox_geometry_matches_the_real_letterbox():
    g = Letterbox.fit((100, 200), 128)
    assert (g.input_shape, g.unpad_shape, g.top, g.left) == ((128, 128), (64, 128), 32, 0)
    # the tensor the model sees: grey (114) bands exactly where the geometry says
    x = letterbox_tensor(np.zeros((100, 200, 3), np.uint8), 128)[0, 0]  # (128, 128)
    pad = torch.isclose(x, torch.tensor(114 / 255))
    assert pad[: g.top].all() and pad[g.top + g.unpad_shape[0]:].all() and not pad[g.top: g.top + 64].any()


def test_one_hot_token_lands_on_its_pixel_box():
    """(100, 200) image at 128 px: scale 0.64, 32 px bands above and below; stride-16 grid 8x8. Token
    (3, 5) covers letterbox y 48..64, x 80..96 -> original y (48-32)/0.64 .. (64-32)/0.64 = 25..50,
    x 80/0.64 .. 96/0.64 = 125..150."""
    g = Letterbox.fit((100, 200), 128)
    tok = np.zeros((8, 8), np.float32)
    tok[3, 5] = 1.0
    m = grid_to_image(tok, g, interp="nearest")
    assert m.shape == (100, 200)
    expect = np.zeros((100, 200), np.float32)
    expect[25:50, 125:150] = 1.0
    np.testing.assert_array_equal(m, expect)
    # bilinear: same place (peak inside the box, mass centred on it)
    b = grid_to_image(tok, g, interp="bilinear")
    iy, ix = np.unravel_index(b.argmax(), b.shape)
    assert 25 <= iy < 50 and 125 <= ix < 150
    ys, xs = np.mgrid[:100, :200]
    assert abs((b * ys).sum() / b.sum() - 37.5) < 1.0 and abs((b * xs).sum() / b.sum() - 137.5) < 1.0
    # a token in the padding band reaches no pixel
    pad_tok = np.zeros((8, 8), np.float32)
    pad_tok[0, 2] = 1.0
    assert grid_to_image(pad_tok, g, interp="nearest").max() == 0


def test_token_box_agrees_with_detection_box_mapping():
    """Fractional scale (90x170 at 128 px): the hot token's pixels match the box that Ultralytics'
    ``scale_boxes`` (which maps the detections) gives for the token's letterbox box, within 1 px."""
    g = Letterbox.fit((90, 170), 128)
    h = w = 8
    for i, j in [(2, 0), (4, 7), (5, 3)]:
        tok = np.zeros((h, w), np.float32)
        tok[i, j] = 1.0
        m = grid_to_image(tok, g, interp="nearest")
        ys, xs = np.nonzero(m)
        got = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        box = ops.scale_boxes((128, 128), torch.tensor([[j * 16.0, i * 16.0, (j + 1) * 16.0, (i + 1) * 16.0]]),
                              (90, 170))[0].numpy()
        np.testing.assert_allclose(got, box, atol=1.0)


def test_select_blocks():
    names = ["model.0.p4_blocks.0.attn", "model.0.p4_blocks.1.attn", "model.0.p5_blocks.0.attn"]
    assert select_blocks(names, None) == names
    assert select_blocks(names, ["p5", "0"]) == [names[0], names[2]]
    assert select_blocks(names, [-1]) == [names[2]]
    with pytest.raises(ValueError, match="p4_blocks.1"):
        select_blocks(names, ["p9"])


# ------------------------------------------------------------------------------------------ capture


def test_capture_sees_salience_and_mask_and_removes_hooks(model):
    x = letterbox_tensor(scene(SQUARE, 40, 0), IMGSZ)
    with torch.no_grad(), SSSACapture(model) as cap:
        assert not no_hooks(model)
        model(x)
    assert no_hooks(model)
    res = cap.results()
    assert list(res) == [n for n, _ in find_sssa_blocks(model)] == [
        "model.0.p4_blocks.0.attn", "model.0.p4_blocks.1.attn", "model.0.p5_blocks.0.attn"]
    mods = dict(find_sssa_blocks(model))
    for name, c in res.items():
        stride = 16 if "p4" in name else 32
        assert c.grid == (IMGSZ // stride, IMGSZ // stride)
        assert c.salience.shape == (model.timesteps, 1, mods[name].heads, c.grid[0] * c.grid[1])
        assert c.salience.min() >= 0 and c.salience.max() <= 1
        # the mask is the saccadic neuron's answer to exactly this salience
        with torch.no_grad():
            torch.testing.assert_close(mods[name].saccade(c.salience), c.mask, rtol=0, atol=0)
    # hooks go also when the body raises
    with pytest.raises(RuntimeError, match="boom"), SSSACapture(model):
        raise RuntimeError("boom")
    assert no_hooks(model)


def test_streaming_capture_equals_parallel(model):
    """Streaming calls (T=1 each) are concatenated along T and equal the parallel capture exactly."""
    from detector.nn import stream

    x = letterbox_tensor(scene(SQUARE, 40, 0), IMGSZ)
    with torch.no_grad(), SSSACapture(model, ["p5"]) as par:
        model.backbone(x)
    with SSSACapture(model, ["p5"]) as seq:
        stream(model.backbone, x, model.timesteps, call=lambda m, inp: m(inp, T=1))
    assert no_hooks(model)
    (a,), (b,) = par.results().values(), seq.results().values()
    assert b.salience.shape[0] == model.timesteps
    assert torch.equal(a.salience, b.salience) and torch.equal(a.mask, b.mask)


def test_salience_concentrates_on_content(result, model):
    assert no_hooks(model)
    y0, y1, x0, x1 = SQUARE
    inside = np.zeros((H0, W0), bool)
    inside[y0:y1, x0:x1] = True
    area = inside.mean()
    assert len(result.blocks) == 3
    for b in result.blocks:
        assert b.salience.shape == (model.timesteps, H0, W0) and b.mask.shape == (model.timesteps, H0, W0)
        assert b.salience_tokens.shape[:2] == (model.timesteps, b.heads)
        s = b.salience_mean
        assert s.sum() > 0, f"{b.name}: silent"
        ratio = s[inside].sum() / s.sum() / area
        assert ratio >= 1.5, f"{b.name}: salience share inside / area share = {ratio:.2f}"


# ------------------------------------------------------------------------------------------ files


def test_panel_and_npz_decode(result, tmp_path):
    p = render_panel(result, tmp_path / "panel.png", timesteps=[0, 3], dpi=50)
    img = cv2.imread(str(p))
    fw, fh = panel_figsize(len(result.blocks), 2, H0 / W0)
    assert img is not None and img.shape[:2] == (round(fh * 50), round(fw * 50)) == result.panel_shape
    assert img.std() > 10  # not blank
    z = np.load(save_npz(result, tmp_path / "maps.npz"))
    assert list(z["block_names"]) == [b.name for b in result.blocks]
    np.testing.assert_array_equal(z["salience_tokens_2"], result.blocks[2].salience_tokens)
    assert z["salience_0"].shape == (4, H0, W0) and z["geometry"].tolist()[:2] == [H0, W0]


def _tool(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    spec = importlib.util.spec_from_file_location("heatmap_tool", REPO / "tools" / "heatmap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_tool(tmp_path, monkeypatch, capsys):
    tool = _tool(monkeypatch)
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a b.png"), scene(SQUARE, 40, 0))
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    rc = tool.main(["--source", str(src), "--model", "n", "--imgsz", "128", "--calib", "1", "--out", str(out),
                    "--blocks", "p5", "--timesteps", "0", "--dpi", "40", "--save-npz"])
    assert rc == 0
    panel = cv2.imread(str(out / "a b_heatmap.png"))
    fw, fh = panel_figsize(1, 1, H0 / W0)
    assert panel.shape[:2] == (round(fh * 40), round(fw * 40))
    assert list(np.load(out / "a b_heatmap.npz")["block_names"]) == ["model.0.p5_blocks.0.attn"]
    # clear errors: missing default weights, a bad block or timestep
    import detector.weights as W

    monkeypatch.setattr(W, "default_weights", lambda: tmp_path / "none.pt")
    assert tool.main(["--source", str(src), "--out", str(out)]) == 2
    assert "weights not found" in capsys.readouterr().err
    assert tool.main(["--source", str(src), "--model", "n", "--imgsz", "128", "--calib", "1", "--out", str(out),
                      "--timesteps", "9"]) == 2
    assert "out of range" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ trained model


def test_trained_salience_on_ssdd_ships(ssdd_root):
    """With the shipped SSDD weights at their own image size: on SSDD test images the time-mean salience
    of the first stride-16 SSSA block puts more of its mass inside the ground-truth ship boxes than their
    area share (ratio > 1, averaged over the images). (At stride 32 most SSDD ships are smaller than one
    token, and there the shipped weights' salience does not single them out.) Skipped while no weights
    are shipped."""
    import xml.etree.ElementTree as ET

    from detector.weights import default_imgsz, default_weights, load_model

    DEFAULT_WEIGHTS = default_weights()
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"no trained weights at {DEFAULT_WEIGHTS}")
    model = load_model(DEFAULT_WEIGHTS)
    ratios = []
    for xml in sorted((ssdd_root / "Annotations").glob("*1.xml"))[:5]:
        img = cv2.imread(str(ssdd_root / "JPEGImages" / f"{xml.stem}.jpg"))
        inside = np.zeros(img.shape[:2], bool)
        for o in ET.parse(xml).getroot().iter("bndbox"):
            x1, y1, x2, y2 = (int(float(o.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax"))
            inside[y1:y2, x1:x2] = True
        s = heatmap_image(model, img, default_imgsz(model), blocks=[0]).blocks[0].salience_mean
        if s.sum() > 0 and inside.any():
            ratios.append(s[inside].sum() / s.sum() / inside.mean())
    assert ratios and float(np.mean(ratios)) > 1.0, ratios
