"""What the subcommands share: the one-line usage error, argument types, the model options and
the per-layer spectra table."""

from __future__ import annotations

import argparse

from jaxflow._checks import MAX_SIZE
from jaxflow._text import encodable  # noqa: F401  (re-exported for the subcommands)


class UsageError(Exception):
    """A user error: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the whole usage block; one line is enough
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


MAX_INT = MAX_SIZE  # the largest size an option takes: XLA's sizes and loop counts are 32-bit


def _int_value(text) -> int:
    """``text`` as an integer, or the error argparse reports."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _float_value(text) -> float:
    """``text`` as a float, or the error argparse reports."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _int_from_one_to(maximum: int):
    """The argparse type of an integer from 1 to ``maximum``."""

    def parse(text):
        value = _int_value(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be >= 1")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be <= {maximum}")
        return value

    return parse


_positive_int = _int_from_one_to(MAX_INT)


def _seed(text):
    """A random seed: an integer that ``jax.random.key`` takes (64-bit signed)."""
    value = _int_value(text)
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(
            f"{value} is not allowed; a seed must fit in 64 bits (-2**63 <= seed < 2**63)"
        )
    return value


def _output_path(text):
    """A path the command writes; the empty string is refused (it names no file)."""
    if not text:
        raise argparse.ArgumentTypeError("'' is not a path")
    return text


def json_number(value):
    """A float for JSON output: ``None`` (null) for NaN, ``"inf"``/``"-inf"`` for infinities
    (JSON has no NaN or Infinity; Python's ``json`` would write them bare, which is not JSON)."""
    import math

    value = float(value)
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def json_safe(value):
    """``value`` with every float made valid JSON by :func:`json_number` (dicts, lists, tuples
    and NumPy scalars are walked)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # a NumPy or JAX scalar
        return json_safe(value.item())
    if isinstance(value, float):
        return json_number(value)
    return value


def dump_json(value, stream) -> None:
    """Writes ``value`` as JSON (NaN as null, infinities as "inf"/"-inf"), and a newline."""
    import json

    json.dump(json_safe(value), stream, indent=2, allow_nan=False)
    stream.write("\n")


def _init_arg(text):
    """A scheme name, or 'sigma_w2,sigma_b2' variances."""
    if "," in text:
        try:
            sigma_w2, sigma_b2 = (float(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a pair of variances 'sigma_w2,sigma_b2'"
            ) from None
        return (sigma_w2, sigma_b2)
    return text


def _finite_float(text):
    """Any finite number."""
    value = _float_value(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; it must be finite")
    return value


def _float_at_least(minimum, strict):
    def parse(text):
        value = _float_value(text)
        if value != value or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(
                f"{value} is not allowed; it must be {'>' if strict else '>='} {minimum}"
            )
        if value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; it must be finite")
        return value

    return parse


def _add_model_options(parser):
    from jaxflow.activations import ACTIVATIONS
    from jaxflow.initializers import INIT_SCHEMES

    parser.add_argument(
        "--model", choices=("mlp", "residual"), default="mlp", help="network family"
    )
    parser.add_argument("--depth", type=_positive_int, default=20, help="number of blocks L")
    parser.add_argument("--width", type=_positive_int, default=64, help="hidden width n")
    parser.add_argument(
        "--activation",
        choices=sorted(ACTIVATIONS),
        default="sigmoid",
        metavar="NAME",
        help=f"activation: {', '.join(sorted(ACTIVATIONS))} (default: sigmoid)",
    )
    parser.add_argument(
        "--init",
        type=_init_arg,
        default="xavier",
        metavar="SCHEME",
        help=f"initialisation: {', '.join(INIT_SCHEMES)}, or variances 'sigma_w2,sigma_b2' "
        "(default: xavier)",
    )
    parser.add_argument("--seed", type=_seed, default=0, help="random seed for weights and input")


def _build_model(args):
    import jaxflow as jf

    builder = jf.mlp if args.model == "mlp" else jf.residual_stack
    try:
        return builder(args.depth, args.width, activation=args.activation, init=args.init)
    except ValueError as error:  # the builders' messages name the argument and what is allowed
        raise UsageError(f"jaxflow {args.command}: {error}") from None


def spectra_rows(chain, *, underflow: bool = True) -> list[dict]:
    """One dict per layer l of a ``JacobianChain``: ‖J_l‖₂, σ_min(J_l), ‖P_l‖₂, σ_min(P_l), the
    resolved count of P_l and (if ``underflow``) whether P_l underflows float32."""
    layer_sv, product_sv = chain.layer_singular_values, chain.product_singular_values
    rows = []
    for i in range(layer_sv.shape[0]):  # row i is layer l = i + 1
        row = {
            "layer": i + 1,
            "J_norm": float(layer_sv[i, 0]),
            "J_min": float(layer_sv[i, -1]),
            "P_norm": float(product_sv[i, 0]),
            "P_min": float(product_sv[i, -1]),
            "P_resolved": int(chain.resolved[i]),
        }
        if underflow:
            row["underflow"] = bool(chain.underflow[i])
        rows.append(row)
    return rows


def format_spectra_table(rows, *, fancy: bool = False, width: int | None = None) -> str:
    """The rows of :func:`spectra_rows` as a text table, one line per layer.

    ``fancy`` writes the headers with Unicode (‖J_l‖₂); ``width`` adds the column of resolved
    singular values of P_l out of ``width``, with an ``underflow`` mark where the row has one.
    Rows with a ``log_spread`` (ln σ_max(P_l) − ln σ_min(P_l)) get that column, rows with a
    ``block`` name get it last; a value of ``None`` (not computed) prints as ``n/a``.
    """
    headers = (
        ("layer", "‖J_l‖₂", "σ_min(J_l)", "‖P_l‖₂", "σ_min(P_l)")
        if fancy
        else ("layer", "|J_l|_2", "smin(J_l)", "|P_l|_2", "smin(P_l)")
    )
    spread = any("log_spread" in row for row in rows)
    named = any("block" in row for row in rows)
    header = f"{headers[0]:>5}  " + "  ".join(f"{h:>11}" for h in headers[1:])
    header += f"  {'spread':>8}" if spread else ""
    lines = [header + ("  resolved" if width is not None else "") + ("  block" if named else "")]
    for row in rows:
        values = (row["J_norm"], row["J_min"], row["P_norm"], row["P_min"])
        marks = ("", _floor_mark(row, "J_min"), "", _floor_mark(row, "P_min"))
        line = f"{row['layer']:>5}  " + "  ".join(
            _number(v, 11 - len(m), ".4e") + m for v, m in zip(values, marks, strict=True)
        )
        if spread:
            line += "  " + _number(row.get("log_spread"), 8, ".3f")
        if width is not None:
            mark = "  underflow" if row.get("underflow") else ""
            line += f"  {row['P_resolved']:>5}/{width}{mark}"
        if named:
            line += f"  {row.get('block', '')}"
        lines.append(line)
    return "\n".join(lines)


def _floor_mark(row, key):
    """``*`` after a σ_min the row marks as below its rounding floor (``key + "_resolved"``)."""
    return "*" if row.get(f"{key}_resolved") is False else ""


def _number(value, width, spec):
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}{spec}}"
