"""``python -m bpfload.cli``: the ``bpfload`` command."""
import sys

from .main import main

sys.exit(main())
