"""Image I/O for detection and analysis: reading images (with their georeferencing), the letterbox
geometry, frames (still images and video frames alike), and the output writers."""
