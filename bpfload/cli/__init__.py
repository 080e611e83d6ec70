"""The ``bpfload`` command line (:mod:`.main`) and the demo (:mod:`.demo`)."""
from .main import main

__all__ = ["main"]
