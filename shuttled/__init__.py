"""shuttled: the control and orchestration daemon of a Cell Shuttle instrument."""

__version__ = "0.1.0"
