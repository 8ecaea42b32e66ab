"""Pure builders for deep MLPs and residual stacks.

Every network here has one shape: **input map → L identical blocks → readout**.

* The input map is the identity when ``in_dim`` is ``None`` (the input already has ``width``
  features: the notes' ``DeepNet`` is ``mlp(depth=10, width=64, out_dim=1)``), and a linear ``Dense``
  layer from ``in_dim`` to ``width`` otherwise.
* The blocks run under ``nn.scan`` with their parameters stacked on a leading depth axis, so the
  lowered program — and compile time — does not grow with depth. An MLP block is
  h_l = φ(W_l h_{l−1} + b_l); a residual block is h_l = h_{l−1} + F_l(h_{l−1}) with the branch
  F = Dense → [norm] → φ → … → Dense (``branch_depth`` Dense layers, the notes' ResidualBlock for 2).
* The readout is a linear ``Dense`` to ``out_dim`` (``None``: no readout).

Block l is initialised from the model key with l folded in, so it does not depend on the total
depth: a depth-d model's blocks equal the first d blocks of a deeper model made with the same key,
and one computation at the largest depth answers every smaller depth.

:meth:`Network.decompose` cuts a model at its blocks into pure functions (:class:`Stack`): that is
what :mod:`jaxflow.jacobians` differentiates, one block at a time, inside one ``lax.scan``.

Every ``Dense`` runs at ``Precision.HIGHEST`` so spectra are float32-exact on GPUs too (where a
float32 dot otherwise defaults to TF32).

BatchNorm (``norm="batch"``): in training mode the statistics couple the examples of a batch, so a
per-example Jacobian is not defined. jaxflow's Jacobians use inference mode: the stored running mean
μ and variance v, under which BatchNorm is the affine map z ↦ γ(z − μ)/√(v + ε) + β with
Jacobian diag(γ/√(v + ε)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxflow._checks import model_input, positive_int
from jaxflow.activations import get_activation
from jaxflow.initializers import InitScheme, get_init

__all__ = ["MLP", "Network", "ResidualStack", "Stack", "mlp", "residual_stack"]

HIGHEST = jax.lax.Precision.HIGHEST
NORMS = (None, "layer", "batch")
WRT = ("postactivation", "preactivation")


class Stack(NamedTuple):
    """A network cut at its blocks: ``readout(blocks(input_map(x)))``, all pure functions.

    Attributes:
      input_map: x → h_0.
      block_fn: ``(block_variables, h) -> h``, one block; ``block_variables`` is one layer's slice
        of ``blocks``.
      blocks: the stacked block variables, every leaf with a leading axis of length L.
      readout: h_L → y.
      depth: L, the number of blocks (the length of the chain).

    Example:
      >>> import jax, jaxflow as jf
      >>> model = jf.mlp(depth=3, width=4)
      >>> variables = model.init(jax.random.key(0), jax.numpy.ones(4))
      >>> model.decompose(variables).depth
      3
    """

    input_map: Callable[[jax.Array], jax.Array]
    block_fn: Callable[[Any, jax.Array], jax.Array]
    blocks: Any
    readout: Callable[[jax.Array], jax.Array]
    depth: int


def _layer_init(init, layer):
    # Fold the layer index into the key: block l's parameters then depend on (key, l) only, never
    # on how many blocks follow (nn.scan's own split would tie them to the depth).
    def layer_init(key, shape, dtype=jnp.float32):
        return init(jax.random.fold_in(key, layer), shape, dtype)

    return layer_init


def _dense(features, init: InitScheme, use_bias, param_dtype, name, layer=None, *, fan_in):
    init = init.for_fan_in(fan_in)  # Flax hands the bias initialiser only (features,)
    kernel_init, bias_init = init.kernel_init, init.bias_init
    if layer is not None:
        kernel_init, bias_init = _layer_init(kernel_init, layer), _layer_init(bias_init, layer)
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        precision=HIGHEST,
        param_dtype=param_dtype,
        name=name,
    )


class DenseBlock(nn.Module):
    """One MLP block, h ↦ φ(W h + b), in ``nn.scan`` form ``(h, layer) -> (h, None)``."""

    width: int
    activation: str
    init_scheme: InitScheme
    use_bias: bool = True
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h, layer=0):
        dense = _dense(
            self.width,
            self.init_scheme,
            self.use_bias,
            self.param_dtype,
            "Dense_0",
            layer,
            fan_in=self.width,
        )
        return get_activation(self.activation).fn(dense(h)), None


class ResidualBlock(nn.Module):
    """One residual block, h ↦ h + F(h), in ``nn.scan`` form ``(h, layer) -> (h, None)``.

    F is ``branch_depth`` Dense layers with [norm →] φ between consecutive ones.
    """

    width: int
    activation: str
    init_scheme: InitScheme
    branch_depth: int = 2
    norm: str | None = None
    use_bias: bool = True
    param_dtype: Any = jnp.float32
    train: bool = False

    @nn.compact
    def __call__(self, h, layer=0):
        phi = get_activation(self.activation).fn
        f = h
        for k in range(self.branch_depth):
            dense = _dense(
                self.width,
                self.init_scheme,
                self.use_bias,
                self.param_dtype,
                f"Dense_{k}",
                layer,
                fan_in=self.width,
            )
            f = dense(f)
            if k == self.branch_depth - 1:
                break
            if self.norm == "layer":
                f = nn.LayerNorm(param_dtype=self.param_dtype, name=f"LayerNorm_{k}")(f)
            elif self.norm == "batch":
                f = nn.BatchNorm(
                    use_running_average=not self.train,
                    momentum=0.9,
                    param_dtype=self.param_dtype,
                    name=f"BatchNorm_{k}",
                )(f)
            f = phi(f)
        return h + f, None


class Network(nn.Module):
    """Input map → ``depth`` scanned blocks → readout. Build one with :func:`mlp` or
    :func:`residual_stack`; subclasses say what a block is.

    Example:
      >>> import jaxflow as jf
      >>> isinstance(jf.mlp(2, 3), jf.Network), isinstance(jf.residual_stack(2, 3), jf.Network)
      (True, True)
    """

    depth: int = 1
    width: int = 64
    activation: str = "relu"
    init_scheme: InitScheme | None = None
    in_dim: int | None = None
    out_dim: int | None = 1
    use_bias: bool = True
    param_dtype: Any = jnp.float32

    @property
    def input_dim(self) -> int:
        """The number of input features the model takes."""
        return self.width if self.in_dim is None else self.in_dim

    block_class = None  # the block Module class, set by subclasses (a class attribute, not a field)

    @nn.nowrap
    def block_kwargs(self, train: bool = False) -> dict:
        """The keyword arguments of :attr:`block_class` for this network."""
        raise NotImplementedError

    @nn.nowrap
    def block(self, train: bool = False) -> nn.Module:
        """The block module (unscanned): one layer of the stack."""
        return self.block_class(**self.block_kwargs(train))

    @nn.nowrap
    def _edge(self, name, features, fan_in):
        return _dense(
            features, self.init_scheme, self.use_bias, self.param_dtype, name, fan_in=fan_in
        )

    @nn.compact
    def __call__(self, x, train: bool = False):
        model_input("x", x, self.input_dim)
        h = x if self.in_dim is None else self._edge("input", self.width, self.input_dim)(x)
        scanned = nn.scan(
            self.block_class,
            variable_axes={"params": 0, "batch_stats": 0},
            split_rngs={"params": False},  # the layer index is folded in instead (see _layer_init)
            length=self.depth,
        )
        h, _ = scanned(**self.block_kwargs(train), name="blocks")(h, jnp.arange(self.depth))
        return h if self.out_dim is None else self._edge("readout", self.out_dim, self.width)(h)

    @nn.nowrap
    def _check_depth(self, block_vars):
        """``ValueError`` unless every stacked block variable has this model's depth (the scan
        would otherwise run over as many blocks as the variables hold: a longer or shorter
        chain than the model's, from another model's variables)."""
        lengths = {jnp.shape(a)[0] for a in jax.tree.leaves(block_vars) if jnp.ndim(a)}
        if lengths != {self.depth} and (lengths or self.depth > 0):
            held = " or ".join(str(n) for n in sorted(lengths)) or "no"
            raise ValueError(
                f"variables hold {held} stacked blocks; this "
                f"{type(self).__name__} has depth={self.depth}: pass the variables of "
                "model.init(...) for this model"
            )

    @nn.nowrap
    def decompose(self, variables, wrt: str = "postactivation") -> Stack:
        """Cuts the network at its blocks into pure functions (see :class:`Stack`).

        Args:
          variables: the model's variables, as returned by ``model.init``.
          wrt: ``"postactivation"`` (h_l, the default) or, for :class:`MLP` only,
            ``"preactivation"``: the chain then runs over z^[l] = W^[l] φ(z^[l−1]) + b^[l] for
            l = 2…L, so its Jacobians are the notes' J^[l] = W^[l] diag(φ′(z^[l−1])).

        Returns:
          A :class:`Stack`. Block functions use BatchNorm in inference mode.
        """
        if wrt not in WRT:
            raise ValueError(f"wrt={wrt!r} is not a known convention; use one of {WRT}")
        if wrt == "preactivation":
            raise ValueError(
                f"wrt='preactivation' is defined for mlp only, not {type(self).__name__}; "
                "use wrt='postactivation'"
            )
        params = variables["params"]
        block = self.block(train=False)
        block_vars = {k: v["blocks"] for k, v in variables.items() if "blocks" in v}
        self._check_depth(block_vars)

        def block_fn(v, h):
            return block.apply(v, h)[0]

        return Stack(
            self._input_map(params), block_fn, block_vars, self._readout(params), self.depth
        )

    @nn.nowrap
    def _input_map(self, params):
        if self.in_dim is None:
            return lambda x: x
        edge = self._edge(None, self.width, self.input_dim)
        return lambda x: edge.apply({"params": params["input"]}, x)

    @nn.nowrap
    def _readout(self, params):
        if self.out_dim is None:
            return lambda h: h
        edge = self._edge(None, self.out_dim, self.width)
        return lambda h: edge.apply({"params": params["readout"]}, h)


class MLP(Network):
    """A deep MLP: ``depth`` blocks h_l = φ(W_l h_{l−1} + b_l) under ``nn.scan``. See :func:`mlp`.

    Example:
      >>> import jaxflow as jf
      >>> model = jf.mlp(4, 8, activation="relu", init="he")
      >>> type(model).__name__, model.depth, model.input_dim
      ('MLP', 4, 8)
    """

    block_class = DenseBlock

    @nn.nowrap
    def block_kwargs(self, train: bool = False) -> dict:
        return dict(
            width=self.width,
            activation=self.activation,
            init_scheme=self.init_scheme,
            use_bias=self.use_bias,
            param_dtype=self.param_dtype,
        )

    @nn.nowrap
    def decompose(self, variables, wrt: str = "postactivation") -> Stack:
        if wrt != "preactivation":
            return super().decompose(variables, wrt)
        if self.depth < 2:
            raise ValueError(
                f"wrt='preactivation' needs depth >= 2 (the chain is J^[l] for l = 2…L); "
                f"this model has depth={self.depth}"
            )
        params = variables["params"]
        phi = get_activation(self.activation).fn
        dense = self._edge(None, self.width, self.width)
        self._check_depth(params["blocks"])
        stacked = params["blocks"]["Dense_0"]
        first = jax.tree.map(lambda a: a[0], stacked)
        input_map, readout = self._input_map(params), self._readout(params)

        def block_fn(v, z):
            return dense.apply(v, phi(z))

        return Stack(
            lambda x: dense.apply({"params": first}, input_map(x)),
            block_fn,
            {"params": jax.tree.map(lambda a: a[1:], stacked)},
            lambda z: readout(phi(z)),
            self.depth - 1,
        )


class ResidualStack(Network):
    """A residual stack: ``depth`` blocks h_l = h_{l−1} + F_l(h_{l−1}). See :func:`residual_stack`.

    Example:
      >>> import jaxflow as jf
      >>> model = jf.residual_stack(4, 8, norm="layer")
      >>> type(model).__name__, model.branch_depth, model.norm
      ('ResidualStack', 2, 'layer')
    """

    branch_depth: int = 2
    norm: str | None = None

    block_class = ResidualBlock

    @nn.nowrap
    def block_kwargs(self, train: bool = False) -> dict:
        return dict(
            width=self.width,
            activation=self.activation,
            init_scheme=self.init_scheme,
            branch_depth=self.branch_depth,
            norm=self.norm,
            use_bias=self.use_bias,
            param_dtype=self.param_dtype,
            train=train,
        )


def _common(depth, width, activation, init, in_dim, out_dim):
    depth = positive_int("depth", depth)
    width = positive_int("width", width)
    if in_dim is not None:
        in_dim = positive_int("in_dim", in_dim)
    if out_dim is not None:
        out_dim = positive_int("out_dim", out_dim)
    get_activation(activation)
    name = activation.name if not isinstance(activation, str) else activation
    return dict(
        depth=depth,
        width=width,
        activation=name,
        init_scheme=get_init(init),
        in_dim=in_dim,
        out_dim=out_dim,
    )


def mlp(
    depth: int,
    width: int,
    *,
    activation: str = "relu",
    init: Any = "he",
    in_dim: int | None = None,
    out_dim: int | None = 1,
    use_bias: bool = True,
    param_dtype: Any = jnp.float32,
) -> MLP:
    """Builds a deep MLP: input map → ``depth`` × (Dense → φ) → Dense readout.

    Args:
      depth: number of hidden blocks L ≥ 1; the Jacobian chain has L layers.
      width: hidden width n ≥ 1.
      activation: a name from :data:`jaxflow.ACTIVATIONS`.
      init: a scheme name (``"xavier"``, ``"he"``, ``"orthogonal"``, ...), a mean-field pair
        ``(sigma_w2, sigma_b2)`` of variances, or an :class:`~jaxflow.InitScheme`.
      in_dim: input features; ``None`` means ``width`` with no input layer.
      out_dim: readout features; ``None`` means no readout (the output is h_L).
      use_bias: whether the Dense layers have biases.
      param_dtype: parameter dtype (``jnp.float64`` under ``jax_enable_x64``).

    Returns:
      An :class:`MLP` (a ``flax.linen.Module``); its parameters are
      ``params["blocks"]["Dense_0"]["kernel"]`` of shape ``(depth, width, width)`` and so on.

    Raises:
      ValueError: for depth/width/in_dim/out_dim < 1 or an unknown activation/init.

    Example:
      >>> import jax, jaxflow as jf
      >>> model = jf.mlp(depth=20, width=64, activation="sigmoid", init="xavier")
      >>> variables = model.init(jax.random.key(0), jax.numpy.ones(64))
      >>> variables["params"]["blocks"]["Dense_0"]["kernel"].shape
      (20, 64, 64)
    """
    return MLP(
        **_common(depth, width, activation, init, in_dim, out_dim),
        use_bias=use_bias,
        param_dtype=param_dtype,
    )


def residual_stack(
    depth: int,
    width: int,
    *,
    activation: str = "relu",
    init: Any = "he",
    branch_depth: int = 2,
    norm: str | None = None,
    in_dim: int | None = None,
    out_dim: int | None = 1,
    use_bias: bool = True,
    param_dtype: Any = jnp.float32,
) -> ResidualStack:
    """Builds a residual stack: input map → ``depth`` × (h + F(h)) → Dense readout.

    The branch is F = Dense → [norm] → φ → … → Dense with ``branch_depth`` Dense layers; with
    ``branch_depth=2`` and no norm it is the notes' ``ResidualBlock`` (Linear, ReLU, Linear). Each
    block's Jacobian is J_l = I + ∂F_l/∂h.

    Args:
      depth: number of residual blocks L ≥ 1.
      width: width n ≥ 1 of the residual stream and of the branch.
      activation: a name from :data:`jaxflow.ACTIVATIONS`.
      init: a scheme name, a mean-field pair ``(sigma_w2, sigma_b2)``, or an ``InitScheme``.
      branch_depth: Dense layers per branch, ≥ 1.
      norm: ``None``, ``"layer"`` (LayerNorm) or ``"batch"`` (BatchNorm; Jacobians use the running
        statistics, i.e. inference mode — see the module docs). Placed after every Dense of the
        branch but the last, before φ.
      in_dim: input features; ``None`` means ``width`` with no input layer.
      out_dim: readout features; ``None`` means no readout.
      use_bias: whether the Dense layers have biases.
      param_dtype: parameter dtype.

    Returns:
      A :class:`ResidualStack`. Call it with ``train=True`` (and ``mutable=["batch_stats"]``) to
      update BatchNorm statistics.

    Raises:
      ValueError: for sizes < 1, an unknown activation/init, or an unknown norm.

    Example:
      >>> import jax, jaxflow as jf
      >>> model = jf.residual_stack(depth=50, width=64, activation="sigmoid", init="xavier")
      >>> y = model.apply(model.init(jax.random.key(0), jax.numpy.ones(64)), jax.numpy.ones(64))
      >>> y.shape
      (1,)
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not a known normalisation; use one of {NORMS}")
    return ResidualStack(
        **_common(depth, width, activation, init, in_dim, out_dim),
        use_bias=use_bias,
        param_dtype=param_dtype,
        branch_depth=positive_int("branch_depth", branch_depth),
        norm=norm,
    )
