"""The report writer: sections as Markdown, a self-contained HTML page and JSON."""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["Check", "Section", "write_report"]


class Check(NamedTuple):
    """One number held against its theory.

    Attributes:
      name: what is compared, e.g. ``"explicit vs jax.grad (relative error)"``.
      measured: the measured value.
      expected: the theory's value or bound as text, e.g. ``"< 1e-5"``.
      passed: whether the measurement agrees with the theory within the stated tolerance.

    Example:
      >>> from jaxflow.report import Check
      >>> Check("ratio", 3.6e-12, "= 2^-38 ± 1e-5 rel", True).passed
      True
    """

    name: str
    measured: float
    expected: str
    passed: bool


class Section(NamedTuple):
    """One claim of the notes, reproduced.

    Attributes:
      key: a short identifier, e.g. ``"chain_rule"`` (figure names start with it).
      title: the heading.
      claim: what the notes or theory say.
      method: what was measured, and how.
      checks: the :class:`Check` rows.
      figures: file names of the figures, relative to the report folder.
      numbers: every number behind the section (JSON-serialisable).
      seconds: wall-clock time it took.
      text: preformatted text shown after the checks (e.g. a table), or ``""``.
      timing: ``None``, or where the time went, as :func:`jaxflow.report.reproduce.reproduce`
        measures it: ``{"seconds", "compile_seconds", "trace_seconds", "compilations"}`` (XLA
        compilation, tracing and lowering, and the number of programs compiled).

    Example:
      >>> from jaxflow.report import Check, Section
      >>> Section("k", "t", "c", "m", (Check("x", 1.0, "< 2", True),), (), {}, 0.1).passed
      True
    """

    key: str
    title: str
    claim: str
    method: str
    checks: tuple[Check, ...]
    figures: tuple[str, ...]
    numbers: dict
    seconds: float
    text: str = ""
    timing: dict | None = None

    @property
    def passed(self) -> bool:
        """Whether every check passed (a section without checks has nothing to fail)."""
        return all(check.passed for check in self.checks)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def _time(section: Section) -> str:
    """``"12.3 s"``, and the compile share when measured: ``"12.3 s (8.1 s compiling)"``."""
    if not section.timing:
        return f"{section.seconds:.1f} s"
    return f"{section.seconds:.1f} s ({section.timing['compile_seconds']:.1f} s compiling)"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf
    return value


def _markdown(sections: Sequence[Section], meta: dict) -> str:
    passed = sum(s.passed for s in sections)
    lines = [
        f"# {meta.get('title', 'jaxflow report')}",
        "",
        f"{passed} of {len(sections)} sections pass their theory checks.",
        "",
        " · ".join(f"{k}: {_format(v)}" for k, v in meta.items() if k != "title"),
        "",
        "| section | result | time |",
        "| --- | --- | --- |",
    ]
    for s in sections:
        result = "pass" if s.passed else "**FAIL**"
        lines.append(f"| [{s.title}](#{s.key}) | {result} | {_time(s)} |")
    for s in sections:
        lines += [
            "",
            f'<a id="{s.key}"></a>',
            f"## {s.title} — {'pass' if s.passed else 'FAIL'}",
            "",
            f"**Claim.** {s.claim}",
            "",
            f"**Measured.** {s.method}",
            "",
        ]
        if s.checks:
            lines += ["| check | measured | theory | result |", "| --- | --- | --- | --- |"]
            for c in s.checks:
                mark = "pass" if c.passed else "**FAIL**"
                lines.append(f"| {c.name} | {_format(c.measured)} | {c.expected} | {mark} |")
            lines.append("")
        if s.text:
            lines += ["```", s.text.rstrip("\n"), "```", ""]
        for figure in s.figures:
            lines += [f"![{s.title}]({figure})", ""]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem}
th{background:#f3f3f3}.pass{color:#176d2c}.fail{color:#b00020;font-weight:bold}
img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:.5rem;overflow-x:auto}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem}
"""


def _html(sections: Sequence[Section], meta: dict, folder: str) -> str:
    e = html.escape
    passed = sum(s.passed for s in sections)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(meta.get('title', 'jaxflow report'))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(meta.get('title', 'jaxflow report'))}</h1>",
        f"<p>{passed} of {len(sections)} sections pass their theory checks.</p>",
        "<p>" + " · ".join(f"{e(k)}: {e(_format(v))}" for k, v in meta.items() if k != "title"),
        "</p><table><tr><th>section</th><th>result</th><th>time</th></tr>",
    ]
    for s in sections:
        cls, word = ("pass", "pass") if s.passed else ("fail", "FAIL")
        parts.append(
            f"<tr><td><a href='#{e(s.key)}'>{e(s.title)}</a></td>"
            f"<td class='{cls}'>{word}</td><td>{e(_time(s))}</td></tr>"
        )
    parts.append("</table>")
    for s in sections:
        cls, word = ("pass", "pass") if s.passed else ("fail", "FAIL")
        parts += [
            f"<h2 id='{e(s.key)}'>{e(s.title)} — <span class='{cls}'>{word}</span></h2>",
            f"<p><b>Claim.</b> {e(s.claim)}</p><p><b>Measured.</b> {e(s.method)}</p>",
        ]
        if s.checks:
            parts.append(
                "<table><tr><th>check</th><th>measured</th><th>theory</th><th>result</th></tr>"
            )
            for c in s.checks:
                ccls, cword = ("pass", "pass") if c.passed else ("fail", "FAIL")
                parts.append(
                    f"<tr><td>{e(c.name)}</td><td>{e(_format(c.measured))}</td>"
                    f"<td>{e(c.expected)}</td><td class='{ccls}'>{cword}</td></tr>"
                )
            parts.append("</table>")
        if s.text:
            parts.append(f"<pre>{e(s.text)}</pre>")
        for figure in s.figures:
            with open(os.path.join(folder, figure), "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            parts.append(f"<p><img alt='{e(s.title)}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _write_new(path: str, text: str) -> None:
    from jaxflow._files import write_file

    write_file(path, text)  # whole or not at all; never replaces a file that is already there


def write_report(sections: Sequence[Section], folder: str | os.PathLike, meta: dict) -> dict:
    """Writes ``report.md``, ``report.html`` (figures embedded) and ``numbers.json`` to ``folder``.

    Args:
      sections: the :class:`Section` results, in order; their figures must already be in ``folder``.
      folder: an existing folder.
      meta: run facts shown at the top (title, versions, device, timings).

    Returns:
      ``{"markdown": path, "html": path, "json": path}``.

    Raises:
      FileExistsError: if any of the three files exists already (nothing is overwritten).

    Example:
      >>> import tempfile
      >>> from jaxflow.report import Section, write_report
      >>> paths = write_report([Section("a", "A", "c", "m", (), (), {"x": 1}, 0.0)],
      ...                      tempfile.mkdtemp(), {"title": "demo"})
      >>> sorted(paths)
      ['html', 'json', 'markdown']
    """
    folder = os.fspath(folder)
    paths = {
        "markdown": os.path.join(folder, "report.md"),
        "html": os.path.join(folder, "report.html"),
        "json": os.path.join(folder, "numbers.json"),
    }
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} already exist; nothing was written")
    numbers = {
        "meta": _jsonable(meta),
        "sections": {
            s.key: {
                "title": s.title,
                "passed": s.passed,
                "seconds": s.seconds,
                **({"timing": s.timing} if s.timing else {}),
                "checks": [_jsonable(c._asdict()) for c in s.checks],
                "figures": list(s.figures),
                "numbers": _jsonable(s.numbers),
                "text": s.text,
            }
            for s in sections
        },
    }
    _write_new(paths["json"], json.dumps(numbers, indent=2, allow_nan=False) + "\n")
    _write_new(paths["markdown"], _markdown(sections, meta))
    _write_new(paths["html"], _html(sections, meta, folder))
    return paths
