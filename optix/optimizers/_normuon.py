r"""NorMuon: Muon's orthogonalised momentum with each output neuron normalised by a running
second moment, for matrix-shaped weights, with AdamW for the other leaves.

Reference: Li, Liu, Liang, Chen & Zhao, `NorMuon: Making Muon more efficient and scalable
<https://arxiv.org/abs/2510.05491>`_, 2025.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix.optimizers._muon_family import matrices_and_the_rest
from optix.optimizers._muon_family import matrix_layouts
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import NonNegativeOrNone
from optix.toolkit import arguments_for
from optix.toolkit import checked
from optix.toolkit import transform
from optix.transforms._distribute import map_stacks
from optix.transforms._matrix import decayed_weights
from optix.transforms._orthogonalize import NS_COEFFS
from optix.transforms._orthogonalize import Coeffs
from optix.transforms._orthogonalize import Orthogonalize
from optix.transforms._orthogonalize import orthogonalizer


class ScaleByNorMuonState(NamedTuple):
    """State of :func:`scale_by_normuon`: hyperparameters, momentum, per-neuron second moments."""

    hyperparams: HyperparamState  # beta, b2, eps, ns_eps, rms_scale
    mu: Updates  # momentum buffer, an EMA of the gradients, shaped like the params
    nu: Updates  # per leaf (count, 1, fan_out): EMA of each neuron's mean squared update


@transform(ScaleByNorMuonState)
def scale_by_normuon(
    beta: Beta = 0.95,
    b2: Beta = 0.95,
    eps: NonNegative = 1e-8,
    *,
    ns_eps: NonNegative = 1e-7,
    rms_scale: NonNegative = 0.2,
    ns_steps: int = 5,
    ns_coeffs: Coeffs = NS_COEFFS,
    orthogonalize: Orthogonalize = "newton_schulz",
    nesterov: bool = False,
    layout: Literal["in_out", "out_in"] = "in_out",
    mu_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""Muon followed by a per-neuron Adam-style normalisation (NorMuon).

    For each matrix (``m = fan_in`` rows by ``n = fan_out`` neurons in the default layout):

    .. math::
        M_t = \beta M_{t-1} + (1-\beta) G_t, \quad O_t = \mathrm{orth}(M_t), \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\mathrm{mean}_{\text{fan-in}}(|O_t|^2), \\
        \hat O_t = O_t \oslash (\sqrt{v_t} + \epsilon), \quad
        u_t = \frac{\rho \sqrt{m n}}{\|\hat O_t\|_F}\,\hat O_t

    (``v_t`` has one entry per output neuron, broadcast over its fan-in; ``u_t = 0`` when
    ``\hat O_t = 0``). The update's RMS is ``rho`` (0.2: AdamW's, as in the paper), so learning
    rates carry over from Muon with ``scale_mode="match_rms_adamw"``. ``orth`` is any of
    :func:`scale_by_muon`'s orthogonalisers; momentum without Nesterov and without bias
    correction, and ``v`` without bias correction, as in the paper's algorithm. A neuron is an
    output unit: the ``fan_out`` axis of the ``(fan_in, fan_out)`` matrix of each leaf (the rows
    of a torch ``(out, in)`` weight with ``layout="out_in"``).

    Args:
      beta: momentum decay ``beta`` (the paper's ``beta_1``).
      b2: decay of the per-neuron second moment.
      eps: ``epsilon`` of the normalisation.
      ns_eps: guards the orthogonaliser's normalisation (:func:`scale_by_muon`'s ``eps``).
      rms_scale: ``rho``, the update's RMS.
      ns_steps, ns_coeffs, orthogonalize, nesterov, layout, mu_dtype, matrix_spec: as in
        :func:`scale_by_muon`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_normuon()
      >>> state = tx.init({"w": jnp.zeros((4, 3))})
      >>> u, state = tx.update({"w": jnp.eye(4, 3)}, state)
      >>> bool(jnp.allclose(jnp.sqrt(jnp.mean(u["w"] ** 2)), 0.2))
      True

    Reference: Li, Liu, Liang, Chen & Zhao, `NorMuon: Making Muon more efficient and scalable
    <https://arxiv.org/abs/2510.05491>`_, 2025.
    """
    orth = orthogonalizer(orthogonalize, ns_steps, ns_coeffs)
    _tree.check_state_dtype("mu_dtype", mu_dtype)
    if layout not in ("in_out", "out_in"):
        raise ValueError(f"`layout` must be 'in_out' or 'out_in', got {layout!r}")
    spec = Hyperparams(beta=beta, b2=b2, eps=eps, ns_eps=ns_eps, rms_scale=rms_scale)
    what = "`scale_by_normuon`"

    def layouts_of(params):
        return matrix_layouts(params, what, matrix_spec, layout == "out_in")

    def init(params):
        layouts = layouts_of(params)
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")

        def nu_leaf(m, lay):
            if lay is None:
                return jnp.zeros((0, 1, 0), _tree.real_dtype(m.dtype))
            stack = jax.eval_shape(lay.to_stack, jax.ShapeDtypeStruct(m.shape, m.dtype))
            count, _, fan_out = stack.shape
            return jnp.zeros((count, 1, fan_out), _tree.real_dtype(m.dtype))

        nu = _tree.map_leaves(nu_leaf, mu, layouts)
        return ScaleByNorMuonState(spec.init(), mu, nu)

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_normuon")
        layouts = layouts_of(updates)
        h, hyperparams = spec.step(state.hyperparams)

        def momentum(g, m):
            g32, m32 = _tree.upcast(g), _tree.upcast(m)
            m32 = h.beta * m32 + (1 - h.beta) * g32
            x = h.beta * m32 + (1 - h.beta) * g32 if nesterov else m32
            return x, m32

        def leaf(g, x, m32, m, v, lay, o):
            if o is None:
                return x.astype(g.dtype), m32.astype(m.dtype), v
            v32 = _tree.upcast(v)
            fan_in, fan_out = lay.matrix
            v32 = h.b2 * v32 + (1 - h.b2) * jnp.mean(_tree.abs_sq(o), axis=-2, keepdims=True)
            o = o / (jnp.sqrt(v32) + h.eps).astype(o.dtype)
            norm = jnp.sqrt(jnp.sum(_tree.abs_sq(o), axis=(-2, -1), keepdims=True))
            factor = h.rms_scale * math.sqrt(fan_in * fan_out) / jnp.where(norm > 0, norm, 1)
            o = o * factor.astype(o.dtype)
            return lay.from_stack(o).astype(g.dtype), m32.astype(m.dtype), v32.astype(v.dtype)

        xs, ms = _tree.map_leaves(momentum, updates, state.mu, n_out=2)
        # each leaf's (count, fan_in, fan_out) stack orthogonalised matrix by matrix; under a
        # distribution each device computes only its share of the matrices
        x_leaves, treedef = jax.tree.flatten(xs)
        lays = treedef.flatten_up_to(layouts)
        with jax.numpy_dtype_promotion("standard"):
            stacks = [
                None if lay is None or x.size == 0 else lay.to_stack(x)
                for x, lay in zip(x_leaves, lays, strict=True)
            ]
            orthed = treedef.unflatten(map_stacks(orth, stacks, (h.ns_eps,)))
        updates, mu, nu = _tree.map_leaves(
            leaf, updates, xs, ms, state.mu, state.nu, layouts, orthed, n_out=3
        )
        return updates, ScaleByNorMuonState(hyperparams, mu, nu)

    return GradientTransformation(init, update)


@checked
def normuon(
    learning_rate: NonNegative,
    beta: Beta = 0.95,
    b2: Beta = 0.95,
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    labels: Any = None,
    ns_eps: NonNegative = 1e-7,
    rms_scale: NonNegative = 0.2,
    ns_steps: int = 5,
    ns_coeffs: Coeffs = NS_COEFFS,
    orthogonalize: Orthogonalize = "newton_schulz",
    nesterov: bool = False,
    layout: Literal["in_out", "out_in"] = "in_out",
    adam_learning_rate: NonNegativeOrNone = None,
    adam_b1: Beta = 0.9,
    adam_b2: Beta = 0.999,
    adam_eps: NonNegative = 1e-8,
    adam_weight_decay: NonNegative = 0.0,
    mu_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""NorMuon for matrix (and conv) weights, AdamW for everything else.

    .. math::
        W_t = W_{t-1} - \eta \big(u_t + \lambda W_{t-1}\big)

    with ``u_t`` :func:`scale_by_normuon`'s neuron-normalised orthogonal update (RMS
    ``rms_scale``) for each leaf labelled ``"muon"``; the others take an AdamW step with the
    ``adam_*`` settings. Labels, ``matrix_spec`` and the state's two branches as in
    :func:`optix.muon` (the Muon branch's state is a :class:`ScaleByNorMuonState`).

    Args:
      learning_rate: ``eta`` >= 0, or a schedule (shared by both branches unless
        ``adam_learning_rate`` is given).
      beta, b2, eps: momentum decay, per-neuron second-moment decay and its ``epsilon``.
      weight_decay: decoupled decay ``lambda`` of the NorMuon branch (``W -= eta lambda W``).
      mask: which params decay (both branches).
      labels: ``"muon"``/``"adam"`` per leaf, as in :func:`optix.muon`.
      ns_eps, rms_scale, ns_steps, ns_coeffs, orthogonalize, nesterov, layout, mu_dtype, matrix_spec: see
        :func:`scale_by_normuon`.
      adam_learning_rate, adam_b1, adam_b2, adam_eps, adam_weight_decay: the AdamW branch.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
      >>> tx = optix.normuon(0.02, orthogonalize="polar_express")
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.eye(4, 3), "b": jnp.ones(3)}, state, params)
      >>> updates["b"]
      Array([-0.02, -0.02, -0.02], dtype=float32)

    Reference: Li, Liu, Liang, Chen & Zhao, `NorMuon: Making Muon more efficient and scalable
    <https://arxiv.org/abs/2510.05491>`_, 2025.
    """
    muon_tx = [
        scale_by_normuon(**arguments_for(scale_by_normuon, locals())),
        *decayed_weights(weight_decay, mask),
    ]
    adam = (adam_learning_rate, adam_b1, adam_b2, adam_eps, adam_weight_decay)
    return matrices_and_the_rest(
        muon_tx, labels, learning_rate, mask, mu_dtype, adam, matrix_spec, layout == "out_in"
    )
