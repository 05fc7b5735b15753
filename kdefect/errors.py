"""One exception type per failure family; every message says what to do next."""

from __future__ import annotations


class KDefectError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class ConfigError(KDefectError, ValueError):
    """A config key, value or override is wrong."""


class DataError(KDefectError):
    """Input data is missing, unreadable or inconsistent."""


class ModelError(KDefectError):
    """A model cannot be built, loaded or trained as asked."""


class ExportError(KDefectError):
    """Conversion to TFLite / Edge TPU failed or is not possible for this model."""


class ModelIntegrityError(KDefectError):
    """A model file does not match its recorded sha256 (tampered or truncated)."""


class EdgeError(KDefectError):
    """The on-device runtime cannot run as asked (interpreter, delegate, source)."""
