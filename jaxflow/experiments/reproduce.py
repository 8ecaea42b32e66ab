"""``jaxflow reproduce``, importable from its former home: the driver is
:mod:`jaxflow.report.reproduce` and every name here is that module's."""

import sys
import types

from jaxflow.report import reproduce as _driver
from jaxflow.report.reproduce import SECTIONS, Context, Report, reproduce

__all__ = ["Report", "reproduce"]
_ = (SECTIONS, Context)  # re-exported


class _Alias(types.ModuleType):
    """Setting a name here sets it on the driver too, so a replaced ``SECTIONS`` is the one run."""

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if hasattr(_driver, name):
            setattr(_driver, name, value)


sys.modules[__name__].__class__ = _Alias
