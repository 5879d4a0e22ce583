"""segcast: live video segmentation and tracking server."""
