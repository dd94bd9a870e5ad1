"""Analysis tools that observe the model without changing it: energy, heatmaps, benchmarks.

Submodules are imported explicitly (``from detector.analysis import attention_bench``); this package
file imports nothing so that importing one tool never pulls in the others.
"""
