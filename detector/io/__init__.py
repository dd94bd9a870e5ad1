"""Image I/O for detection and analysis: reading images (with their georeferencing), the letterbox
geometry, frames (still images and video frames alike), the output folder and the output writers.

Doors for untrusted files, one each: ``gdal.open_raster`` is the only way a path reaches GDAL (every
tool that reads rasters goes through it, directly or through ``images.read_image`` /
``scene.read_scene``, which also apply the one size limit, ``images.check_image_bytes``)."""
