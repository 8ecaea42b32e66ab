"""Reports: sections of claim → measurement → figure → pass/fail, written as Markdown, HTML, JSON.

A :class:`Section` is one claim of the notes or of theory, what was measured, the figures, and
:class:`Check` rows comparing each measured number with its theory at a stated tolerance.
:func:`write_report` writes ``report.md``, a self-contained ``report.html`` (figures embedded) and
``numbers.json`` into a folder; it never overwrites an existing file.

``jaxflow reproduce`` is :mod:`jaxflow.report.reproduce`: its sections live one module per topic
(:mod:`~jaxflow.report.gradient_flow`, :mod:`~jaxflow.report.spectra`,
:mod:`~jaxflow.report.bounds`, :mod:`~jaxflow.report.mean_field`, :mod:`~jaxflow.report.sweep`),
each a function ``section(ctx) -> Section`` that runs an experiment, draws its figure with
:mod:`jaxflow.plotting` and states the claim and checks.
"""

from jaxflow.report.writer import Check, Section, write_report

__all__ = ["Check", "Section", "write_report"]
