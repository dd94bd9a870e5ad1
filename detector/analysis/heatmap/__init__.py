"""SSSA attention heatmaps beside detections (the paper's saliency figures), observed through hooks.

Split by concern: ``capture`` (forward hooks on each attention's tap: salience and spike masks per
timestep), ``panel`` (token maps back to image pixels through the letterbox; PNG panels and raw
.npz), ``run`` (the model, a folder of images, optional tiles)."""

from .capture import BlockCapture, SSSACapture, find_sssa_blocks, select_blocks
from .panel import (INTERPOLATIONS, BlockMaps, HeatmapResult, block_maps, check_timesteps, grid_to_image,
                    panel_figsize, render_panel, save_npz, tokens_to_grid)
from .run import HeatmapOptions, HeatmapSummary, calibrate_bn, heatmap_image, heatmaps, untrained_label, untrained_model

__all__ = ["BlockCapture", "SSSACapture", "find_sssa_blocks", "select_blocks", "INTERPOLATIONS", "BlockMaps",
           "HeatmapResult", "block_maps", "check_timesteps", "grid_to_image", "panel_figsize",
           "render_panel", "save_npz", "tokens_to_grid", "HeatmapOptions", "HeatmapSummary", "calibrate_bn", "heatmap_image", "heatmaps",
           "untrained_label", "untrained_model"]
