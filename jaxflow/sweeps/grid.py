"""The sweep grid: which networks a sweep runs, validated before anything runs."""

from __future__ import annotations

import dataclasses
import json
import numbers
import os

from jaxflow._checks import positive_int
from jaxflow.activations import ACTIVATIONS, get_activation
from jaxflow.initializers import FAMILIES, INIT_SCHEMES, InitScheme, get_init

__all__ = ["DEFAULT_METRICS", "FAMILIES", "Grid", "METRICS", "TRAINING_METRICS"]

MODELS = ("mlp", "residual")
NORMS = (None, "layer")
P_SPECTRUM_METHODS = ("svd", "stable")

METRICS = (
    "J_spectrum",
    "P_spectrum",
    "J_spectra",
    "P_spectra",
    "activation_grad_norm",
    "weight_grad_norm",
    "grad_ratio",
    "dead_fraction",
    "saturated_fraction",
    "theory",
)
"""Every metric a sweep can compute, by name (see :func:`jaxflow.sweep` for what each one is)."""

TRAINING_METRICS = ("training",)
"""Metrics that train the grid's networks (``jaxflow.sweep(grid, data=..., training=...)``):
``"training"`` records the training curves, the first non-finite step and the initial Jacobian
spread of :func:`jaxflow.experiments.trainability`. Never a default (it needs data)."""

FULL_SPECTRA = ("J_spectra", "P_spectra")
DEFAULT_METRICS = tuple(m for m in METRICS if m not in FULL_SPECTRA)
"""What ``metrics=None`` means (less what does not apply): everything but the full spectra."""


def _fail(key, value, allowed):
    raise ValueError(f"{key}={value!r} is not allowed; {allowed}")


def _as_tuple(key, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = (value,)
    value = tuple(value)
    if not value:
        raise ValueError(f"{key}=() is empty; give at least one value")
    return value


def _no_duplicates(key, values, labels=None):
    labels = values if labels is None else labels
    seen = set()
    for value, label in zip(values, labels, strict=True):
        if label in seen:
            raise ValueError(f"{key} lists {value!r} twice; every value must be distinct")
        seen.add(label)


def init_label(init) -> str:
    """The coordinate label of an init entry: its name, ``"gaussian(σ_w², σ_b²)"`` or
    ``"orthogonal(σ_w², σ_b²)"``."""
    if isinstance(init, str):
        return get_init(init).name
    if len(init) == 3:
        return f"orthogonal({init[1]:g},{init[2]:g})"
    return f"gaussian({init[0]:g},{init[1]:g})"


def _is_orthogonal_triple(init) -> bool:
    return isinstance(init, (tuple, list)) and len(init) == 3 and init[0] == "orthogonal"


def _are_variances(values) -> bool:
    return all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)


# The bias families the sweep kernel can draw (N(0, σ_b²) with σ_b² as data, or none).
_SWEEP_BIAS_FAMILIES = ("zeros", "normal")


def _scheme(init) -> InitScheme:
    """The registry's scheme of a (normalised) init entry, with a description the sweep can use."""
    scheme = get_init(init)
    if scheme.family not in FAMILIES:
        raise ValueError(
            f"init={init!r} has weight family {scheme.family!r}; the sweep draws only "
            f"{', '.join(FAMILIES)} weights"
        )
    if scheme.bias_family not in _SWEEP_BIAS_FAMILIES or scheme.bias_fan_in_scale is not None:
        raise ValueError(
            f"init={init!r} draws {scheme.bias_family} biases with a fan-in-dependent variance, "
            "which the sweep kernel cannot draw yet; it draws zero or N(0, σ_b²) biases "
            "(use a scheme name without biases or a (sigma_w2, sigma_b2) pair)"
        )
    return scheme


def _normalise_init(init):
    if isinstance(init, InitScheme):
        raise ValueError(
            f"init={init.name!r} is an InitScheme; a grid takes scheme names or (sigma_w2, "
            "sigma_b2) pairs, so it can be saved and compared"
        )
    if isinstance(init, str):
        return _scheme(init).name  # raises, listing the valid names
    if isinstance(init, (tuple, list)) and len(init) == 2:
        if not _are_variances(init):
            raise ValueError(f"init entry {init!r} must be two numbers (sigma_w2, sigma_b2)")
        get_init(tuple(float(v) for v in init))  # validates the variances
        return (float(init[0]), float(init[1]))
    if _is_orthogonal_triple(init):
        if not _are_variances(init[1:]):
            raise ValueError(
                f"init entry {init!r} must be 'orthogonal' and two numbers (sigma_w2, sigma_b2)"
            )
        entry = ("orthogonal", float(init[1]), float(init[2]))
        get_init(entry)  # validates the variances
        return entry
    raise ValueError(
        f"init entry {init!r} is not allowed; use a scheme name "
        f"({', '.join(INIT_SCHEMES)}), a pair (sigma_w2, sigma_b2) or a triple "
        "('orthogonal', sigma_w2, sigma_b2)"
    )


def init_family(init) -> str:
    """``"normal"``, ``"uniform"`` or ``"orthogonal"``: how an init entry draws its kernel.

    Read from the registry's :class:`~jaxflow.InitScheme`; a scheme the sweep cannot draw raises.
    """
    return _scheme(init).family


def kernel_variances(init, width: int, out_dim: int = 1) -> tuple[float, float, float]:
    """(Var(W) hidden, Var(W) readout, Var(b)) of an init entry, in float32.

    Hidden kernels are width×width, the readout width×out_dim. The values are the scheme's own
    :meth:`~jaxflow.InitScheme.kernel_variance` and :meth:`~jaxflow.InitScheme.bias_variance`
    (jax's ``variance_scaling`` arithmetic: ``σ_w² / fan`` in Python floats, then float32), so the
    sweep's weights are bitwise those of the core model; for orthogonal both are gain², the
    scale the kernel passes to :func:`jaxflow.orthogonal`.
    """
    import numpy as np

    scheme = _scheme(init)
    if scheme.family == "orthogonal":
        hidden = readout = scheme.sigma_w2
    else:
        hidden = scheme.kernel_variance(width, width)
        readout = scheme.kernel_variance(width, out_dim)
    return np.float32(hidden), np.float32(readout), np.float32(scheme.bias_variance(width))


def init_variances(init) -> tuple[float, float]:
    """(σ_w², σ_b²) of an init entry for a square layer (orthogonal: gain² and 0, or the
    triple's σ_b²)."""
    if isinstance(init, tuple):
        return init[-2:]
    scheme = _scheme(init)
    return float(scheme.sigma_w2), float(scheme.sigma_b2)


@dataclasses.dataclass(frozen=True)
class Grid:
    """What a sweep runs: every (activation, init, seed) network at every depth.

    A depth-d network is the first d blocks of the deepest one (block l's init depends only on
    the key and l), so a sweep runs one scan to ``max(depth)`` and reads every depth from it.

    Attributes:
      depth: depths to report, each ≥ 1, distinct (sorted ascending).
      activation: activation names from :data:`jaxflow.ACTIVATIONS`, distinct.
      init: scheme names (``"xavier"``, ``"he"``, ``"orthogonal"``, ...), mean-field pairs
        ``(sigma_w2, sigma_b2)`` of variances (Gaussian weights), or triples
        ``("orthogonal", sigma_w2, sigma_b2)`` (orthogonal weights of gain √σ_w², N(0, σ_b²)
        biases: :func:`jaxflow.initializers.orthogonal_at`), distinct. Labels: the name,
        ``"gaussian(1.5,0.05)"``, ``"orthogonal(1,0.05)"``.
      model: ``"mlp"`` or ``"residual"``.
      width: hidden width n.
      seeds: number of seeds; seed s draws weights and data from ``jax.random.key(s)``.
      batch: inputs per seed, x ~ N(0, I_n) (and targets y ~ N(0, 1) for the loss).
      metrics: metric names from :data:`METRICS`, or ``"training"`` (:data:`TRAINING_METRICS`:
        train every network, which ``jaxflow.sweep`` then needs ``data=`` and ``training=``
        for); ``None`` means every default metric that applies to the model and activations
        (the full spectra and training excluded, ``"theory"`` included).
      saturation: a unit is saturated when |φ′(z)| ≤ ``saturation``·sup|φ′| for every input.
      branch_depth: Dense layers per residual branch (``model="residual"``).
      norm: ``None`` or ``"layer"`` (residual branch LayerNorm).
      p_spectrum_method: how the P_l spectra are taken: ``"svd"`` (the product carried as a
        float32 matrix and decomposed by LAPACK; it loses small singular values below
        σ_max·n·ε and underflows in deep contracting chains) or ``"stable"`` (the graded
        factorisation of :func:`jaxflow.log_spectrum`: every ln σ_i(P_l) at any depth, and
        ``P_sv_mean_log``/``P_cond`` computed from the logarithms). The two agree where both are
        exact (tested). The default is ``"svd"`` by measurement: the reference grid
        (:mod:`jaxflow.sweeps.reference`, J and P spectra, depth ≤ 40) took 8.1 CPU-seconds by
        SVD and 60.8 by the stable method (2-core CPU, 2026-12-04; checksums equal to 4e-7),
        and at such depths the SVD is exact but for the values it flags as unresolved
        (``P_resolved``). Take ``"stable"`` for deep contracting chains.

    Example:
      >>> import jaxflow as jf
      >>> grid = jf.Grid(depth=[5, 10], activation=["relu", "tanh"], init=["he", (1.0, 0.05)])
      >>> grid.num_configs, grid.max_depth
      (32, 10)
    """

    depth: tuple = (5, 10, 20, 40)
    activation: tuple = ("relu", "tanh", "sigmoid")
    init: tuple = ("xavier", "he", "orthogonal")
    model: str = "mlp"
    width: int = 64
    seeds: int = 8
    batch: int = 4
    metrics: tuple | None = None
    saturation: float = 0.1
    branch_depth: int = 2
    norm: str | None = None
    p_spectrum_method: str = "svd"

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.model not in MODELS:
            _fail("model", self.model, f"use one of {', '.join(MODELS)}")
        depth = tuple(positive_int("depth", d) for d in _as_tuple("depth", self.depth))
        _no_duplicates("depth", depth)
        set_("depth", tuple(sorted(depth)))
        activation = _as_tuple("activation", self.activation)
        for name in activation:
            if not isinstance(name, str) or name not in ACTIVATIONS:
                _fail("activation", name, f"valid names are: {', '.join(sorted(ACTIVATIONS))}")
        _no_duplicates("activation", activation)
        set_("activation", activation)
        init = self.init
        if (isinstance(init, (tuple, list)) and len(init) == 2 and _are_variances(init)) or (
            _is_orthogonal_triple(init)
        ):
            init = (tuple(init),)  # one pair or triple, not two or three entries
        raw = _as_tuple("init", init)
        init = tuple(_normalise_init(i) for i in raw)
        _no_duplicates("init", raw, [init_label(i) for i in init])  # aliases count as duplicates
        set_("init", init)
        for key in ("width", "seeds", "batch", "branch_depth"):
            set_(key, positive_int(key, getattr(self, key)))
        if self.norm not in NORMS:
            _fail("norm", self.norm, f"use one of {NORMS}")
        sat = self.saturation
        if not isinstance(sat, numbers.Real) or isinstance(sat, bool) or not 0 < sat < 1:
            _fail("saturation", sat, "it must be a number in (0, 1)")
        set_("saturation", float(sat))
        if self.p_spectrum_method not in P_SPECTRUM_METHODS:
            _fail(
                "p_spectrum_method",
                self.p_spectrum_method,
                f"use one of {', '.join(repr(m) for m in P_SPECTRUM_METHODS)}",
            )
        set_("metrics", self._check_metrics())

    def _check_metrics(self):
        needs_output = ("dead_fraction", "saturated_fraction")
        lacking = [a for a in self.activation if get_activation(a).derivative_from_output is None]
        if self.metrics is None:
            skip = set(needs_output) if (self.model != "mlp" or lacking) else set()
            return tuple(m for m in DEFAULT_METRICS if m not in skip)
        metrics = _as_tuple("metrics", self.metrics)
        for m in metrics:
            if m not in METRICS + TRAINING_METRICS:
                _fail("metrics", m, f"valid metrics are: {', '.join(METRICS + TRAINING_METRICS)}")
        if "training" in metrics and self.model != "mlp":
            raise ValueError("metrics='training' is defined for model='mlp' only")
        _no_duplicates("metrics", metrics)
        for m in set(metrics) & set(needs_output):
            if self.model != "mlp":
                raise ValueError(f"metrics={m!r} is defined for model='mlp' only (h_l = φ(z_l))")
            if lacking:
                raise ValueError(
                    f"metrics={m!r} needs φ′ written in terms of φ's output, which "
                    f"{', '.join(lacking)} lack; drop the metric or those activations"
                )
        return tuple(m for m in METRICS + TRAINING_METRICS if m in metrics)  # canonical order

    @property
    def max_depth(self) -> int:
        """The depth of the one scan: the largest depth."""
        return self.depth[-1]

    @property
    def num_configs(self) -> int:
        """Number of (activation, init, seed) networks."""
        return len(self.activation) * len(self.init) * self.seeds

    @property
    def init_labels(self) -> tuple[str, ...]:
        """Coordinate labels of the init axis."""
        return tuple(init_label(i) for i in self.init)

    def to_dict(self) -> dict:
        """A JSON-able dict that :meth:`from_dict` turns back into an equal grid."""
        out = dataclasses.asdict(self)
        out["init"] = [list(i) if isinstance(i, tuple) else i for i in self.init]
        for key in ("depth", "activation", "metrics"):
            out[key] = list(out[key])
        if out["p_spectrum_method"] == "svd":
            # Stores written before the option existed hold grids without it, computed by SVD:
            # leaving the key out keeps their recorded grid identical to an equal grid now.
            del out["p_spectrum_method"]
        return out

    def to_json(self) -> str:
        """The grid as canonical JSON (sorted keys), as stored in a sweep's attributes."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, mapping: dict, *, source: str = "grid") -> Grid:
        """Builds a grid from a mapping (e.g. a parsed TOML table), rejecting unknown keys.

        Args:
          mapping: field name → value.
          source: what to call the mapping in error messages (e.g. a file name).

        Returns:
          The :class:`Grid`.

        Raises:
          ValueError: for an unknown key (listing the allowed ones) or an invalid value.
        """
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in mapping:
            if key not in allowed:
                raise ValueError(
                    f"{source}: unknown key {key!r}; allowed keys are: {', '.join(allowed)}"
                )
        values = dict(mapping)
        if isinstance(values.get("init"), list):
            values["init"] = [tuple(i) if isinstance(i, list) else i for i in values["init"]]
        if values.get("norm", "") in ("none", "None"):
            values["norm"] = None
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> Grid:
        """Reads a grid from a TOML file whose top-level keys are the grid's fields.

        Args:
          path: the file, e.g. containing ``depth = [5, 10]``, ``activation = ["relu"]``,
            ``init = ["he", [1.5, 0.05]]``, ``width = 64``.

        Returns:
          The :class:`Grid`.

        Raises:
          ValueError: for a file that is not valid TOML, an unknown key, or a bad value; the
            message names the file and the key.
        """
        import tomllib

        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML ({error})") from None
        try:
            return cls.from_dict(table, source=path)
        except ValueError as error:
            message = str(error)
            raise ValueError(
                message if message.startswith(path) else f"{path}: {message}"
            ) from None


def same_grid_differences(a: dict, b: dict) -> list[str]:
    """Keys whose values differ between two grid dicts, as 'key: a vs b' lines."""
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
