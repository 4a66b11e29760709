"""One error family for the whole workbench.

Every error says what went wrong *and how to fix it*; pages show ``str(err)`` with
``st.error`` and keep running, the CLI prints it and exits with status 2.
"""
from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: the message is meant for the person using the tool."""


class UnknownModelError(WorkbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


class ModelNotInstalledError(WorkbenchError):
    pass


class CardError(WorkbenchError):
    """A model card in the catalog is malformed."""


class SourceUnavailableError(WorkbenchError):
    """The place the weights come from cannot be reached (no network, package missing)."""


class IntegrityError(WorkbenchError):
    """A file's size or sha256 does not match what the card or manifest pins."""


class UnsupportedModelError(WorkbenchError):
    """Architecture, file format or weight format the workbench refuses to load."""


class InvalidInputError(WorkbenchError, ValueError):
    """A prompt or setting outside what the model can take."""


class DiskSpaceError(WorkbenchError):
    pass


class ExportError(WorkbenchError):
    pass


class UnknownDatasetError(WorkbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


class DatasetFormatError(WorkbenchError, ValueError):
    """A dataset file is empty, too small, or in none of the formats the workbench reads."""


class JobError(WorkbenchError):
    """A fine-tuning job cannot start, stop, resume or finish as asked."""
