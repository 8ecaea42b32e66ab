"""What the subcommands share: the one-line usage error, argument types, the model options and
the per-layer spectra table."""

from __future__ import annotations

import argparse

from jaxflow._text import encodable  # noqa: F401  (re-exported for the subcommands)


class UsageError(Exception):
    """A user error: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the whole usage block; one line is enough
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be >= 1")
    return value


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


def _float_at_least(minimum, strict):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(
                f"{value} is not allowed; it must be {'>' if strict else '>='} {minimum} "
                "(a variance)"
            )
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
    parser.add_argument("--seed", type=int, default=0, help="random seed for weights and input")


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
        line = f"{row['layer']:>5}  " + "  ".join(_number(v, 11, ".4e") for v in values)
        if spread:
            line += "  " + _number(row.get("log_spread"), 8, ".3f")
        if width is not None:
            mark = "  underflow" if row.get("underflow") else ""
            line += f"  {row['P_resolved']:>5}/{width}{mark}"
        if named:
            line += f"  {row.get('block', '')}"
        lines.append(line)
    return "\n".join(lines)


def _number(value, width, spec):
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}{spec}}"
