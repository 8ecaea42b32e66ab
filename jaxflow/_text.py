"""Text-output helpers shared by the reports and the command line.

Private: import as ``from jaxflow._text import encodable``.
"""

from __future__ import annotations

import sys


def encodable(text: str, stream=None) -> bool:
    """Whether ``stream`` (default: stdout) can encode ``text``: pick ✓/‖σ‖ or ASCII fallbacks."""
    encoding = getattr(stream or sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True
