"""mir: multitask music analysis on one shared Harmonic CQT front end."""

__version__ = "0.1.0"
