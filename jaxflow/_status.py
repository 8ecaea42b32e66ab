"""The base of jaxflow's status vocabularies: integer codes inside ``jit``, names on the host.

Private: the public enums are :class:`jaxflow.GradientStatus` and :class:`jaxflow.PredictionStatus`.
"""

from __future__ import annotations

import enum

import numpy as np


class StatusCode(enum.IntEnum):
    """Integer status codes: an ``IntEnum``, so members equal the ints that ``jit`` returns.

    Subclasses list their members with values 0, 1, 2, ... in order.
    """

    @classmethod
    def name_of(cls, codes) -> str | np.ndarray:
        """The lowercase name of a code, or an array of names shaped like an array of codes.

        The one way to name a status: host-side, for a member, an int or an array of codes
        (batched results included).

        Raises:
          ValueError: for a code that is not one of this enum's values.
        """
        codes = np.asarray(codes)
        if not np.issubdtype(codes.dtype, np.integer) or np.any((codes < 0) | (codes >= len(cls))):
            raise ValueError(
                f"codes {codes.tolist()!r} are not all {cls.__name__} values; "
                f"use integers in 0..{len(cls) - 1}"
            )
        names = np.asarray([member.name.lower() for member in cls])[codes]
        return str(names) if codes.ndim == 0 else names
