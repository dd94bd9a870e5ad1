"""Surveys: a model over an archive of scenes on Dask distributed (``tools/survey.py``).

    from detector.survey import SurveyOptions, survey
    s = survey("archive/", "out/", SurveyOptions(weights="ssdd", workers=4))

Modules: ``catalog`` (the scenes: folder, glob, text list, local STAC), ``options`` (the one options
record), ``worker`` (what runs on the workers: the model loaded once per process, the scene and tiles
tasks), ``output`` (GeoParquet 1.1 per scene, the pixel-coordinate files, the manifest, the merged
file), ``run`` (the client: resume, tasks, faults, progress). docs/design.md, section 11.

Dask, pyarrow, shapely and pystac (the ``survey`` extra) are imported only when a survey runs, never by
``detect`` or training.
"""

from .options import SurveyOptions
from .run import SurveySummary, survey

__all__ = ["SurveyOptions", "SurveySummary", "survey"]
