"""Weight initialisation schemes, with the ``jax.nn.initializers`` signature.

Every kernel initialiser here is a function ``init(key, shape, dtype=float32) -> Array`` for a
Flax ``Dense`` kernel of shape ``(fan_in, fan_out)`` (Flax stores W transposed: the layer computes
``h @ kernel``). The models initialise each layer of a stack separately, so kernels are always 2-D
here. The schemes are:

=================  ==============================  ==========================================
name               distribution of W               reference
=================  ==============================  ==========================================
``xavier``         N(0, 2/(fan_in+fan_out))         Glorot & Bengio (2010)
``xavier_uniform`` U(±√(6/(fan_in+fan_out)))         Glorot & Bengio (2010)
``he``             N(0, 2/fan_in)                   He et al. (2015)
``he_uniform``     U(±√(6/fan_in))                  He et al. (2015)
``lecun``          N(0, 1/fan_in)                   LeCun et al. (1998)
``orthogonal``     gain × Haar-orthogonal            Saxe et al. (2014)
``pytorch``        U(±1/√fan_in), b the same        PyTorch's ``nn.Linear`` default
``gaussian``       N(0, σ_w²/fan_in), b ~ N(0, σ_b²)  Poole et al. (2016), Schoenholz et al. (2017)
=================  ==============================  ==========================================

Aliases: ``glorot`` = ``xavier`` (also ``*_normal`` / ``*_uniform`` spellings), ``kaiming`` =
``he``. The Gaussian schemes are *untruncated* normals (``jax.nn.initializers.glorot_normal`` uses
a truncated normal): mean-field theory assumes Gaussian weights, and the variances above are then
exact. σ_w² and σ_b² are always **variances**, never standard deviations. Biases are zero except in
``pytorch`` and ``gaussian``.

A scheme is an :class:`InitScheme`: the kernel and bias initialisers plus their description (the
weight family, σ_w² = fan_in·Var(W) for a square layer and the fan it is divided by, the bias
family and variance), the one place the models, mean-field theory and the sweep read it from.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxflow._registry import Registry

__all__ = [
    "INIT_SCHEMES",
    "InitScheme",
    "gaussian",
    "get_init",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "orthogonal",
    "orthogonal_at",
    "pytorch_default",
    "xavier_normal",
    "xavier_uniform",
]

Initializer = Callable[..., jax.Array]

_variance_scaling = jax.nn.initializers.variance_scaling


def xavier_normal(gain: float = 1.0) -> Initializer:
    """Glorot/Xavier normal: W ~ N(0, gain²·2/(fan_in+fan_out)), untruncated.

    Args:
      gain: multiplies the standard deviation.

    Returns:
      An initialiser ``(key, shape, dtype) -> Array``.

    References:
      Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
      networks", AISTATS 2010.

    Example:
      >>> import jax, jaxflow as jf
      >>> jf.xavier_normal()(jax.random.key(0), (64, 64)).shape
      (64, 64)
    """
    return _variance_scaling(gain**2, "fan_avg", "normal")


def xavier_uniform(gain: float = 1.0) -> Initializer:
    """Glorot/Xavier uniform: W ~ U(±gain·√(6/(fan_in+fan_out))), variance 2/(fan_in+fan_out).

    Args:
      gain: multiplies the bound (and the standard deviation).

    Returns:
      An initialiser ``(key, shape, dtype) -> Array``.

    References:
      Glorot & Bengio, AISTATS 2010.

    Example:
      >>> import jax, jaxflow as jf
      >>> float(abs(jf.xavier_uniform()(jax.random.key(0), (64, 64))).max()) <= (6 / 128) ** 0.5
      True
    """
    return _variance_scaling(gain**2, "fan_avg", "uniform")


def he_normal(gain: float = 1.0) -> Initializer:
    """He/Kaiming normal: W ~ N(0, gain²·2/fan_in), untruncated.

    Args:
      gain: multiplies the standard deviation.

    Returns:
      An initialiser ``(key, shape, dtype) -> Array``.

    References:
      He, Zhang, Ren & Sun, "Delving deep into rectifiers", ICCV 2015.

    Example:
      >>> import jax, jaxflow as jf
      >>> w = jf.he_normal()(jax.random.key(0), (4096, 64))
      >>> round(float(w.var() * 4096), 1)
      2.0
    """
    return _variance_scaling(2.0 * gain**2, "fan_in", "normal")


def he_uniform(gain: float = 1.0) -> Initializer:
    """He/Kaiming uniform: W ~ U(±gain·√(6/fan_in)), variance 2/fan_in.

    Args:
      gain: multiplies the bound.

    Returns:
      An initialiser ``(key, shape, dtype) -> Array``.

    References:
      He et al., ICCV 2015.

    Example:
      >>> import jax, jaxflow as jf
      >>> jf.he_uniform()(jax.random.key(0), (64, 64)).shape
      (64, 64)
    """
    return _variance_scaling(2.0 * gain**2, "fan_in", "uniform")


def lecun_normal(gain: float = 1.0) -> Initializer:
    """LeCun normal: W ~ N(0, gain²/fan_in), untruncated.

    Args:
      gain: multiplies the standard deviation.

    Returns:
      An initialiser ``(key, shape, dtype) -> Array``.

    References:
      LeCun, Bottou, Orr & Müller, "Efficient BackProp", 1998.

    Example:
      >>> import jax, jaxflow as jf
      >>> jf.lecun_normal()(jax.random.key(0), (64, 64)).dtype
      dtype('float32')
    """
    return _variance_scaling(gain**2, "fan_in", "normal")


def orthogonal(gain: float = 1.0) -> Initializer:
    """Haar-random orthogonal W scaled by ``gain``: WᵀW = gain²·I (for fan_in ≥ fan_out).

    Args:
      gain: the common singular value of W.

    Returns:
      An initialiser ``(key, shape, dtype) -> Array``.

    References:
      Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep
      linear neural networks", ICLR 2014.

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> w = jf.orthogonal()(jax.random.key(0), (8, 8))
      >>> bool(jnp.allclose(w.T @ w, jnp.eye(8), atol=1e-5))
      True
    """
    return jax.nn.initializers.orthogonal(scale=gain, column_axis=-1)


def _normal(variance) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        return jnp.sqrt(jnp.asarray(variance, dtype)) * jax.random.normal(key, shape, dtype)

    return init


def _gaussian_kernel(sigma_w2) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        fan_in = shape[-2]
        return _normal(sigma_w2 / fan_in)(key, shape, dtype)

    return init


FAMILIES = ("normal", "uniform", "orthogonal")
"""How a scheme draws W: i.i.d. normal, i.i.d. uniform, or Haar-orthogonal (scaled)."""

MODES = ("fan_in", "fan_out", "fan_avg")
BIAS_FAMILIES = ("zeros", "normal", "uniform")


class InitScheme(NamedTuple):
    """A named initialisation scheme: its initialisers and the description of what they draw.

    The description is the one source of what a scheme means: the models call its initialisers,
    mean-field theory reads σ_w² and σ_b², and the compiled sweep redraws its weights from
    ``family``, :meth:`kernel_variance` and :meth:`bias_variance` (with the scale as data).

    Attributes:
      name: registry name (``"xavier"``, ...) or ``"gaussian"``.
      kernel_init: initialiser for a ``(fan_in, fan_out)`` kernel.
      bias_init: initialiser for a ``(fan_out,)`` bias.
      sigma_w2: fan_in·Var(W_ij) for a square layer (orthogonal: gain²), the σ_w² of mean-field
        theory; the scale of :meth:`kernel_variance`.
      sigma_b2: Var(b_i), the σ_b² of mean-field theory (for a bias whose variance falls as
        1/fan_in, ``"pytorch"``, its value at the layer's fan-in, and 0, the infinite-width
        limit, in the registry's entry).
      orthogonal: whether W is orthogonal rather than i.i.d. (free-probability moments differ);
        ``family == "orthogonal"``.
      family: how W is drawn, one of :data:`FAMILIES`; ``None`` for a scheme without a
        description (then only the models can use it).
      mode: which fan divides σ_w² in Var(W_ij) (``"fan_in"``, ``"fan_out"``, ``"fan_avg"``).
      bias_family: how b is drawn: ``"zeros"``, ``"normal"`` or ``"uniform"``.
      bias_fan_in_scale: ``None`` when Var(b) = σ_b²; else Var(b) = bias_fan_in_scale/fan_in.

    Example:
      >>> import jaxflow as jf
      >>> he = jf.get_init("he")
      >>> he.sigma_w2, he.family, he.kernel_variance(fan_in=256, fan_out=128)
      (2.0, 'normal', 0.0078125)
    """

    name: str
    kernel_init: Initializer
    bias_init: Initializer
    sigma_w2: Any
    sigma_b2: Any = 0.0
    orthogonal: bool = False
    family: str | None = None
    mode: str = "fan_in"
    bias_family: str = "zeros"
    bias_fan_in_scale: float | None = None

    def kernel_variance(self, fan_in: int, fan_out: int) -> float:
        """Var(W_ij) of a ``(fan_in, fan_out)`` kernel, computed as jax's ``variance_scaling``
        does (``σ_w² / fan`` in Python floats); orthogonal: gain²/max(fan_in, fan_out)."""
        if self.family == "orthogonal":
            return float(self.sigma_w2) / max(fan_in, fan_out)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
        if self.mode not in fan:
            raise ValueError(f"mode={self.mode!r} is not allowed; use one of {', '.join(MODES)}")
        return self.sigma_w2 / fan[self.mode]

    def bias_variance(self, fan_in: int) -> float:
        """Var(b_i) of a layer with this fan-in."""
        if self.bias_family == "zeros":
            return 0.0
        if self.bias_fan_in_scale is not None:
            return self.bias_fan_in_scale / fan_in
        return self.sigma_b2

    def for_fan_in(self, fan_in: int) -> InitScheme:
        """The scheme of a layer with this fan-in: itself, unless Var(b) depends on fan_in.

        Flax hands a bias initialiser only the bias shape ``(fan_out,)``, so the models call this
        with each layer's fan-in before drawing its bias.
        """
        if self.bias_fan_in_scale is None:
            return self
        if self.bias_family == "uniform":
            bias_init = _uniform_bias(fan_in)
        else:
            bias_init = _normal(self.bias_fan_in_scale / fan_in)
        return self._replace(bias_init=bias_init, sigma_b2=self.bias_variance(fan_in))


_zeros = jax.nn.initializers.zeros


def _uniform_bias(fan_in):
    # PyTorch's nn.Linear bias: U(±1/√fan_in); fan_in=None takes the bias's own length.
    return _uniform(lambda shape: 1.0 / math.sqrt(shape[-1] if fan_in is None else fan_in))


def _uniform(bound_of):
    def init(key, shape, dtype=jnp.float32):
        bound = bound_of(shape)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _check_variance(arg, value, low):
    """A concrete variance (a number or an array of them) must be a finite real ``low``; a traced
    one (inside a sweep's jit or vmap) cannot be looked at and is taken as it is."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 — anything NumPy cannot read is not a number
        array = np.asarray(None)
    if isinstance(value, bool) or not (
        array.dtype.kind in "iuf" or jnp.issubdtype(array.dtype, jnp.floating)  # bfloat16
    ):
        raise TypeError(
            f"{arg}={value!r} is not allowed; a variance is a real number (or an array of them), "
            f"finite and {low}"
        )
    bad = ~np.isfinite(array) | ((array <= 0) if low == "> 0" else (array < 0))
    if np.any(bad):
        raise ValueError(
            f"{arg}={value!r} is not a valid variance; it must be finite and {low} "
            "(σ² is a variance, not a standard deviation)"
        )


def gaussian(sigma_w2: Any, sigma_b2: Any = 0.0) -> InitScheme:
    """The mean-field scheme: W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²). Both are variances.

    ``sigma_w2`` and ``sigma_b2`` may be traced values, so a sweep can ``vmap`` over them.

    Args:
      sigma_w2: weight variance times fan_in; must be > 0.
      sigma_b2: bias variance; must be ≥ 0.

    Returns:
      An :class:`InitScheme`.

    References:
      Poole et al., "Exponential expressivity in deep neural networks through transient chaos",
      NeurIPS 2016; Schoenholz et al., "Deep information propagation", ICLR 2017.

    Example:
      >>> import jaxflow as jf
      >>> scheme = jf.gaussian(1.5, 0.05)
      >>> scheme.sigma_w2, scheme.sigma_b2
      (1.5, 0.05)
    """
    for arg, value, low in (("sigma_w2", sigma_w2, "> 0"), ("sigma_b2", sigma_b2, ">= 0")):
        _check_variance(arg, value, low)
    return InitScheme(
        "gaussian",
        _gaussian_kernel(sigma_w2),
        _normal(sigma_b2),
        sigma_w2,
        sigma_b2,
        family="normal",
        mode="fan_in",
        bias_family="normal",
    )


def orthogonal_at(sigma_w2: Any, sigma_b2: Any = 0.0) -> InitScheme:
    """Orthogonal weights at a mean-field variance: W = √σ_w²·(Haar orthogonal), b ~ N(0, σ_b²).

    The orthogonal counterpart of :func:`gaussian` (the same σ_w² and σ_b², so the same mean-field
    q* and χ₁), the initialisation of dynamical isometry. ``get_init(("orthogonal", σ_w², σ_b²))``
    returns it.

    Args:
      sigma_w2: gain², the common squared singular value of a square W; must be > 0.
      sigma_b2: bias variance; must be ≥ 0 (0: zero biases).

    Returns:
      An :class:`InitScheme` of family ``"orthogonal"``.

    References:
      Pennington, Schoenholz & Ganguli, "Resurrecting the sigmoid in deep learning through
      dynamical isometry", NeurIPS 2017.

    Example:
      >>> import jax, jax.numpy as jnp, jaxflow as jf
      >>> scheme = jf.get_init(("orthogonal", 2.0, 0.05))
      >>> w = scheme.kernel_init(jax.random.key(0), (8, 8))
      >>> scheme.family, bool(jnp.allclose(w.T @ w, 2.0 * jnp.eye(8), atol=1e-5))
      ('orthogonal', True)
    """
    gaussian(sigma_w2, sigma_b2)  # validates both variances, naming the bad one
    zero_bias = isinstance(sigma_b2, numbers.Real) and sigma_b2 == 0
    return InitScheme(
        "orthogonal",
        orthogonal(math.sqrt(sigma_w2)),
        _zeros if zero_bias else _normal(sigma_b2),
        sigma_w2,
        sigma_b2,
        True,
        "orthogonal",
        "fan_in",
        "zeros" if zero_bias else "normal",
    )


def pytorch_default() -> InitScheme:
    """PyTorch's ``nn.Linear`` default: W and b ~ U(±1/√fan_in).

    That is ``kaiming_uniform_(a=√5)`` for W (gain² = 2/(1 + 5) = 1/3, so Var(W) = 1/(3·fan_in)
    and σ_w² = 1/3) and the same bound for b. Flax hands a bias initialiser only ``(fan_out,)``,
    so this scheme's ``bias_init`` takes fan_in = fan_out (a square layer); the models call
    :meth:`InitScheme.for_fan_in` with each layer's real fan-in. σ_b² = 1/(3·fan_in) vanishes at
    infinite width: the registry's entry has σ_b² = 0, a layer's ``for_fan_in`` the finite value.

    Returns:
      An :class:`InitScheme` (the registry's ``"pytorch"``).

    References:
      PyTorch, ``torch.nn.Linear.reset_parameters``; He et al., ICCV 2015.

    Example:
      >>> import jax, jaxflow as jf
      >>> scheme = jf.get_init("pytorch")
      >>> w = scheme.kernel_init(jax.random.key(0), (64, 64))
      >>> bool(abs(w).max() <= 1 / 8), scheme.for_fan_in(64).sigma_b2 == 1 / (3 * 64)
      (True, True)
    """
    return InitScheme(
        "pytorch",
        _uniform(lambda shape: 1.0 / math.sqrt(shape[-2])),
        _uniform_bias(None),
        1.0 / 3.0,  # fan_in·Var(U(±1/√fan_in)) = 1/3
        0.0,
        family="uniform",
        mode="fan_in",
        bias_family="uniform",
        bias_fan_in_scale=1.0 / 3.0,
    )


def _scheme(name, kernel_init, sigma_w2, family, mode="fan_in"):
    return InitScheme(
        name, kernel_init, _zeros, sigma_w2, 0.0, family == "orthogonal", family, mode, "zeros"
    )


INIT_SCHEMES: Registry[InitScheme] = Registry(
    "initialisation scheme",
    {
        "xavier": _scheme("xavier", xavier_normal(), 1.0, "normal", "fan_avg"),
        "xavier_uniform": _scheme("xavier_uniform", xavier_uniform(), 1.0, "uniform", "fan_avg"),
        "he": _scheme("he", he_normal(), 2.0, "normal"),
        "he_uniform": _scheme("he_uniform", he_uniform(), 2.0, "uniform"),
        "lecun": _scheme("lecun", lecun_normal(), 1.0, "normal"),
        "orthogonal": _scheme("orthogonal", orthogonal(), 1.0, "orthogonal"),
        "pytorch": pytorch_default(),
    },
    """Read-only registry of the named schemes (:class:`InitScheme`), by canonical name.

    :func:`get_init` also resolves the aliases ``glorot``, ``kaiming`` and the ``*_normal`` /
    ``*_uniform`` spellings, and mean-field pairs ``(sigma_w2, sigma_b2)``.

    Example:
      >>> import jaxflow as jf
      >>> list(jf.INIT_SCHEMES)
      ['he', 'he_uniform', 'lecun', 'orthogonal', 'pytorch', 'xavier', 'xavier_uniform']
    """,
)

_ALIASES = {
    "xavier_normal": "xavier",
    "glorot": "xavier",
    "glorot_normal": "xavier",
    "glorot_uniform": "xavier_uniform",
    "he_normal": "he",
    "kaiming": "he",
    "kaiming_normal": "he",
    "kaiming_uniform": "he_uniform",
    "lecun_normal": "lecun",
}


def get_init(init: str | InitScheme | tuple) -> InitScheme:
    """Resolves an init argument to an :class:`InitScheme`.

    Args:
      init: a scheme name (see :data:`INIT_SCHEMES` and the aliases ``glorot``, ``kaiming``,
        ``*_normal``), an :class:`InitScheme`, a mean-field pair ``(sigma_w2, sigma_b2)`` or a
        triple ``("orthogonal", sigma_w2, sigma_b2)`` (:func:`orthogonal_at`).

    Returns:
      The :class:`InitScheme`.

    Raises:
      ValueError: for an unknown name or a malformed pair, listing what is allowed.

    Example:
      >>> import jaxflow as jf
      >>> jf.get_init("kaiming").name, jf.get_init((1.0, 0.0)).name
      ('he', 'gaussian')
    """
    if isinstance(init, InitScheme):
        return init
    if isinstance(init, str):
        name = _ALIASES.get(init, init)
        if name in INIT_SCHEMES:
            return INIT_SCHEMES[name]
    elif isinstance(init, (tuple, list)) and len(init) == 2:
        return gaussian(*init)
    elif isinstance(init, (tuple, list)) and len(init) == 3 and init[0] == "orthogonal":
        return orthogonal_at(*init[1:])
    valid = sorted(set(INIT_SCHEMES) | set(_ALIASES))
    raise ValueError(
        f"init={init!r} is not a known initialisation; use one of {', '.join(valid)}, "
        "an InitScheme, a mean-field pair (sigma_w2, sigma_b2) or a triple "
        "('orthogonal', sigma_w2, sigma_b2)"
    )
