r"""Schedule-free learning: interpolation and averaging in place of momentum and learning-rate
decay; the wrapper, the params to evaluate at, and schedule-free SGD and AdamW.

Reference: Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, `The road less scheduled
<https://arxiv.org/abs/2405.15682>`_, NeurIPS 2024.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _hyperparams
from optix import _keypath
from optix import _paths
from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._chain import caller
from optix._chain import chain
from optix._chain import check_transform
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import OpenFraction
from optix.toolkit import checked
from optix.toolkit import transform
from optix.transforms._debiased_rms import scale_by_debiased_rms
from optix.transforms._regularize import add_decayed_weights


class ScheduleFreeState(NamedTuple):
    """State of :func:`schedule_free`: the base sequence ``z`` and the averaging weights."""

    hyperparams: HyperparamState  # learning_rate, b1, weight_lr_power; count is t
    inner_state: OptState  # the base transform's state
    z: Params  # the base iterate z_t, in its own dtype (at least float32 by default)
    weight_sum: jax.Array  # sum of the averaging weights so far
    max_lr: jax.Array  # the largest learning rate used so far
    b1_last: jax.Array  # the b1 that built the current params y_t (1 before the first update)


@transform(ScheduleFreeState)
def schedule_free(
    base: GradientTransformation,
    learning_rate: NonNegative,
    b1: OpenFraction = 0.9,
    weight_lr_power: NonNegative = 2.0,
    *,
    warmup_steps: int = 0,
    z_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Make ``base`` schedule-free: its steps drive a sequence ``z``, the params interpolate
    between ``z`` and the running average ``x`` of ``z``, and ``x`` is the sequence to evaluate.

    .. math::
        y_t = \beta_1 x_t + (1 - \beta_1) z_t, \quad
        z_{t+1} = z_t - \gamma_t d_t, \quad
        c_{t+1} = \frac{\gamma_{\max,t}^{r}}{\sum_{i \le t} \gamma_{\max,i}^{r}}, \quad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    where ``d_t`` is ``base``'s *direction* for the gradient ``g_t = grad f(y_t)`` (the params the
    training loop holds are ``y``), ``gamma_t = learning_rate * min(1, t / warmup_steps)`` with
    ``t = 1, 2, ...``, ``gamma_max,t`` the largest ``gamma`` so far and ``r = weight_lr_power``.
    ``x_t`` is not stored: it is recovered from the params and ``z`` as ``(y_t - (1 - beta_1)
    z_t) / beta_1``, which keeps memory at one extra buffer and stays exact if something else
    moves the params. Read ``x`` with :func:`schedule_free_eval_params`. The returned update,
    ``y_{t+1} - y_t``, is computed as ``c_{t+1} (z_t - y_t) - gamma_t (1 - beta_1 (1 - c_{t+1}))
    d_t`` (the reference code's form), which avoids the cancellation of forming ``y_{t+1}`` first.

    ``base`` gives a direction, not a step: it must not contain the learning rate (for SGD use
    :func:`optix.identity`; for Adam, a second-moment scaling without momentum, as in
    :func:`optix.schedule_free_adamw`). The wrapper owns the learning rate because the same
    ``gamma_t`` scales the ``z`` step and the averaging weights. This differs from
    ``optax.contrib.schedule_free``, whose base optimizer includes the learning rate and whose
    warmup (when built from ``warmup_constant_schedule``) gives the base ``gamma_{t-1}`` but the
    weights ``gamma_t``; optix uses ``gamma_t`` for both, as the authors' reference code does.

    Args:
      base: a transform producing a direction (no learning rate, no momentum).
      learning_rate: ``gamma`` >= 0, or a schedule (without decay; warmup may be given here or
        with ``warmup_steps``).
      b1: interpolation ``beta_1`` in (0, 1).
      weight_lr_power: ``r`` >= 0; the averaging weights are ``gamma_max^r`` (2 in the paper).
      warmup_steps: length of the linear warmup of ``gamma`` (0: none).
      z_dtype: dtype of ``z``; default: the param's dtype widened to at least float32.

    Returns:
      A transform with state :class:`ScheduleFreeState`; ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.schedule_free(optix.identity(), learning_rate=0.1, b1=0.9)
      >>> params = {"w": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(2)}, state, params)
      >>> optix.schedule_free_eval_params(state, optix.apply_updates(params, updates))["w"]
      Array([0.9, 0.9], dtype=float32)

    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, `The road less scheduled
    <https://arxiv.org/abs/2405.15682>`_, NeurIPS 2024.
    """
    check_transform(base, "`base`")
    _validate.check_int("warmup_steps", warmup_steps)
    _tree.check_state_dtype("z_dtype", z_dtype)
    call_base = caller(base)
    spec = Hyperparams(learning_rate=learning_rate, b1=b1, weight_lr_power=weight_lr_power)

    def init(params):
        params = _tree.as_arrays(params)
        _validate.check_float_leaves(params, "`schedule_free` params")
        inner = base.init(params)
        if any(name == "learning_rate" for _, name, _, _ in _hyperparams.hyperparam_entries(inner)):
            raise ValueError(
                "`schedule_free`'s `base` contains a learning rate; give it a direction "
                "(for example `optix.identity()`) and the learning rate to `schedule_free`"
            )
        # a copy even in the param's own dtype: state never shares a buffer with the params
        # (a jitted step donating both would donate that buffer twice)
        z = jax.tree.map(lambda p: jnp.array(p, _tree.state_dtype(p.dtype, z_dtype)), params)
        dt = hyperparam_dtype()
        zero, one = jnp.zeros([], dt), jnp.ones([], dt)
        return ScheduleFreeState(spec.init(), inner, z, zero, jnp.zeros([], dt), one)

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "schedule_free")
        _validate.check_float_leaves(updates, "`schedule_free` updates")
        _validate.check_matches_params(updates, params)
        _validate.check_same_structure(params, state.z, "params", "the `schedule_free` state")
        h, hyperparams = spec.step(state.hyperparams)
        lr, beta = h.learning_rate, h.b1
        if warmup_steps > 0:
            t = h.t.astype(lr.dtype)
            lr = lr * jnp.minimum(t / warmup_steps, jnp.ones_like(t))
        max_lr = jnp.maximum(state.max_lr, lr)
        weight = max_lr**h.weight_lr_power
        weight_sum = state.weight_sum + weight
        positive = weight_sum > 0
        ck = jnp.where(positive, weight / jnp.where(positive, weight_sum, 1), 0)
        directions, inner_state = call_base(updates, state.inner_state, params, extra)
        # y_{t+1} - y_t, written so that no two O(|y|) terms cancel:
        # (1 - r (1 - c)) (z_t - y_t) - gamma (1 - beta (1 - c)) d_t, r = beta / beta_{t-1}.
        # With z_t = z_{t+1} + gamma d_t it reads z_{t+1} rather than z_t:
        # (1 - r (1 - c)) (z_{t+1} - y_t) + gamma (1 - c) (beta - r) d_t. Then the kernel that
        # writes z_{t+1} over z_t's (donated) buffer is the last to read z_t, and XLA need not copy
        # z_t and y_t first (those copies made the step 1.7x optax's on 16M params).
        r = beta / state.b1_last
        coef_zy = 1 - r * (1 - ck)
        coef_d = lr * (1 - ck) * (beta - r)

        # Not leafwise's (g, *state) -> (u, *new_state): the step also reads the base's direction
        # and the params, which are not state, so the casts are written here.
        def leaf(g, d, y, z):
            dc = _tree.upcast(d)
            z_new = z - lr * dc
            step = coef_zy * (z_new - _tree.upcast(y)) + coef_d * dc
            return step.astype(g.dtype), z_new.astype(z.dtype)

        steps, z = _tree.map_leaves(leaf, updates, directions, params, state.z, n_out=2)
        new_state = ScheduleFreeState(hyperparams, inner_state, z, weight_sum, max_lr, beta)
        return steps, new_state

    return GradientTransformation(init, update)


def _find(state: Any) -> list[tuple[tuple[str, ...], ScheduleFreeState]]:
    flat = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: isinstance(x, ScheduleFreeState)
    )[0]
    return [(_keypath.parts(p), n) for p, n in flat if isinstance(n, ScheduleFreeState)]


def schedule_free_eval_params(
    state: OptState, params: Params, *, path: str | None = None
) -> Params:
    r"""The averaged sequence ``x`` of :func:`schedule_free`: the params to evaluate with.

    .. math:: x_t = \bigl(y_t - (1 - \beta_1) z_t\bigr) / \beta_1

    where ``y_t`` are the current ``params`` and ``beta_1`` is the value that built them. The
    schedule-free state may sit anywhere in ``state`` (a chain, a partition, a wrapper such as
    :func:`optix.skip_nonfinite`); leaves it does not cover (other labels of a partition) come back
    unchanged. The result has the params' dtypes.

    Args:
      state: an optimizer state holding one schedule-free state, or several and ``path``.
      params: the current params ``y_t``.
      path: which schedule-free state to read when there are several: its ``/``-joined path, or
        an address whose parts occur in it in order (``"main"`` in a partition).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.skip_nonfinite(optix.schedule_free_sgd(0.5))
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(-jnp.ones(2), state, params)
      >>> optix.schedule_free_eval_params(state, optix.apply_updates(params, updates))
      Array([0.5, 0.5], dtype=float32)

    Reference: Defazio et al., `The road less scheduled <https://arxiv.org/abs/2405.15682>`_,
    NeurIPS 2024.
    """
    found = _find(state)
    if path is not None:
        address = tuple(p for p in path.split("/") if p)
        found = [(p, n) for p, n in found if address and _paths.address_matches(address, p)]
    if not found:
        where = "" if path is None else f" at path {path!r}"
        raise ValueError(
            f"no schedule-free state{where} in this optimizer state; build the optimizer with "
            "`optix.schedule_free(...)`, `optix.schedule_free_sgd` or `optix.schedule_free_adamw`"
        )
    if len(found) > 1:
        hits = ", ".join("/".join(p) or "<root>" for p, _ in found)
        raise ValueError(
            f"several schedule-free states in this optimizer state: {hits}; choose one with "
            "`schedule_free_eval_params(state, params, path=...)`"
        )
    node = found[0][1]
    beta = node.b1_last
    p_leaves, treedef = jax.tree.flatten(params, is_leaf=lambda x: x is None)
    z_leaves = treedef.flatten_up_to(node.z)

    def leaf(y, z):
        if y is None or z is None:
            return y
        with jax.numpy_dtype_promotion("standard"):
            yc = _tree.upcast(y)
            x = yc + ((1 - beta) / beta) * (yc - z)
        return x.astype(y.dtype)

    return treedef.unflatten([leaf(y, z) for y, z in zip(p_leaves, z_leaves, strict=True)])


@checked
def schedule_free_sgd(
    learning_rate: NonNegative = 1.0,
    warmup_steps: int = 0,
    b1: OpenFraction = 0.9,
    weight_decay: NonNegative = 0.0,
    weight_lr_power: NonNegative = 2.0,
    *,
    mask: Any | Callable[[Params], Any] | None = None,
    z_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Schedule-free SGD: momentum replaced by interpolation and averaging, no lr decay needed.

    .. math::
        y_t = \beta_1 x_t + (1-\beta_1) z_t, \quad
        z_{t+1} = z_t - \gamma_t (\nabla f(y_t) + \lambda y_t), \quad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    with ``gamma_t = learning_rate * min(1, t / warmup_steps)`` and ``c_{t+1} = gamma_max^r /
    sum_i gamma_max,i^r`` (see :func:`optix.schedule_free`). The params the training loop holds
    are ``y``; evaluate at ``x = optix.schedule_free_eval_params(state, params)``. Matches
    ``optax.contrib.schedule_free_sgd`` without warmup; with warmup, optix follows the authors'
    reference code (both the ``z`` step and the averaging weight use ``gamma_t``, where optax's
    step uses ``gamma_{t-1}``). Weight decay is taken at ``y`` and scaled by ``gamma_t``, as in
    the reference code and optax.

    Args:
      learning_rate: ``gamma`` >= 0 or a schedule (no decay needed).
      warmup_steps: length of the linear warmup (0: none).
      b1: interpolation ``beta_1`` in (0, 1); 0.9 by default, 0.95 or 0.98 also work well.
      weight_decay: ``lambda`` >= 0.
      weight_lr_power: ``r`` >= 0, the power of the learning rate in the averaging weights.
      mask: which params decay (a pytree of bools or a function of the params).
      z_dtype: dtype of the ``z`` sequence; default: at least float32.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> loss = lambda p: jnp.sum(p**2)
      >>> tx = optix.schedule_free_sgd(0.1)
      >>> params = jnp.array([1.0, 2.0])
      >>> state = tx.init(params)
      >>> for _ in range(100):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = optix.apply_updates(params, updates)
      >>> bool(loss(optix.schedule_free_eval_params(state, params)) < 1e-2)
      True

    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, `The road less scheduled
    <https://arxiv.org/abs/2405.15682>`_, NeurIPS 2024.
    """
    return schedule_free(
        add_decayed_weights(weight_decay, mask),
        learning_rate,
        b1,
        weight_lr_power,
        warmup_steps=warmup_steps,
        z_dtype=z_dtype,
    )


@checked
def schedule_free_adamw(
    learning_rate: NonNegative = 0.0025,
    warmup_steps: int = 0,
    b1: OpenFraction = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 0.0,
    weight_lr_power: NonNegative = 2.0,
    *,
    mask: Any | Callable[[Params], Any] | None = None,
    nu_dtype: DTypeLike | None = None,
    z_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Schedule-free AdamW: Adam's second-moment scaling without momentum, made schedule-free.

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        z_{t+1} = z_t - \gamma_t \Bigl(\frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
        + \lambda y_t\Bigr), \quad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    with ``g_t`` the gradient at ``y_t = beta_1 x_t + (1 - beta_1) z_t`` (the params the
    training loop holds), ``gamma_t = learning_rate * min(1, t / warmup_steps)`` and ``c_{t+1}``
    as in :func:`optix.schedule_free`. Evaluate at ``optix.schedule_free_eval_params(state,
    params)``. The bias correction sits inside the root and ``eps`` outside, as in the authors'
    current reference code and ``optax.contrib.schedule_free_adamw`` (which optix matches without
    warmup; see :func:`schedule_free_sgd` for the warmup difference). The paper's Algorithm 1
    instead folds ``sqrt(1 - beta_2^t)`` into ``gamma_t`` (and so into the averaging weights).

    Args:
      learning_rate: ``gamma`` >= 0 or a schedule (no decay needed).
      warmup_steps: length of the linear warmup (0: none).
      b1: interpolation ``beta_1`` in (0, 1).
      b2: second-moment decay in [0, 1).
      eps: added to the root of the second moment.
      weight_decay: ``lambda`` >= 0, decoupled, taken at ``y``.
      weight_lr_power: ``r`` >= 0, the power of the learning rate in the averaging weights.
      mask: which params decay (a pytree of bools or a function of the params).
      nu_dtype: dtype of the second moment; z_dtype: dtype of ``z`` (default: at least float32).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.schedule_free_adamw(1e-3, warmup_steps=100, weight_decay=1e-4)
      >>> params = {"w": jnp.zeros((2, 2))}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones((2, 2))}, state, params)

    Reference: Defazio et al., `The road less scheduled <https://arxiv.org/abs/2405.15682>`_,
    NeurIPS 2024.
    """
    direction = chain(
        scale_by_debiased_rms(b2, eps, nu_dtype=nu_dtype), add_decayed_weights(weight_decay, mask)
    )
    return schedule_free(
        direction, learning_rate, b1, weight_lr_power, warmup_steps=warmup_steps, z_dtype=z_dtype
    )
