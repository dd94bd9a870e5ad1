"""Ultralytics engine integration: trainer, validator, predictor, input sources; offline/privacy
settings (``offline.apply()`` runs before each of these modules first imports Ultralytics)."""
