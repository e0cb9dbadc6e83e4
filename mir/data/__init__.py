"""Datasets: every dataset yields `Track`s (see `mir.data.track`)."""
