"""Errors that reach the user as one clear line.

Every error a user can cause (bad audio, a wrong dataset path, an unknown task, an
annotation that does not parse) is raised as a subclass of `MirError`; the command-line
entry points catch `MirError` and print its message without a traceback.
"""


class MirError(Exception):
    """An error caused by the user's input or configuration, reported as one line."""


class AudioError(MirError):
    """An audio file is missing, unreadable, silent, too short, or of the wrong format."""


class DatasetError(MirError):
    """A dataset root, track or annotation file is missing or does not parse."""


class ConfigError(MirError):
    """A configuration value is invalid (an unknown task name, say)."""


class OutputError(MirError):
    """An output cannot be written: the disk is full, permission is denied, and the like."""
