"""Ultralytics engine integration: trainers (spiking detector and ANN baseline), distillation,
validator, predictor. The process settings (``detector.settings.apply()``: offline, private, threads,
fonts) are applied here, once, before any module of this package puts Ultralytics to work."""

from .. import settings as _settings

_settings.apply()
