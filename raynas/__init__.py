"""raynas: Ray Tune-driven search for efficient semantic-segmentation networks."""

__version__ = "0.1.0"
