"""Ultralytics engine integration: trainer, validator, predictor; offline/privacy settings."""
