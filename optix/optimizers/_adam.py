r"""Adam and AdamW (with AMSGrad), in torch.optim's conventions.

Reference: Kingma & Ba, `Adam: a method for stochastic optimization
<https://arxiv.org/abs/1412.6980>`_, ICLR 2015; Reddi, Kale & Kumar, `On the convergence of Adam
and beyond <https://openreview.net/forum?id=ryQu7f-RZ>`_, ICLR 2018 (AMSGrad); Loshchilov &
Hutter, `Decoupled weight decay regularization <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import first_and_second_moments
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`: the hyperparameters and the two moment estimates."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root
    mu: Updates  # first moment
    nu: Updates  # second moment (of |g|^2)
    nu_max: Updates | None  # running max of nu (AMSGrad only; None otherwise)


@transform(ScaleByAdamState)
def scale_by_adam(
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    eps_root: NonNegative = 0.0,
    *,
    amsgrad: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Rescale updates by bias-corrected moment estimates (Adam).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \quad
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t / (1-\beta_2^t) + \epsilon_{root}}
        + \epsilon}

    with ``hat v_t = v_t``, or with AMSGrad ``hat v_t = max(hat v_{t-1}, v_t)``: the max is taken
    over the raw second moment and bias-corrected afterwards, as in torch.optim.Adam. (optax's
    ``amsgrad`` takes the max of the bias-corrected moment instead; the two differ early on.)

    Args:
      b1, b2: moment decays in [0, 1).
      eps: added to the denominator, outside the root (torch and optax agree).
      eps_root: added inside the root; useful when differentiating through the optimizer.
      amsgrad: keep the running max of the second moment.
      mu_dtype, nu_dtype: dtypes of the moments (for example ``jnp.bfloat16`` to halve memory);
        default: the param's dtype widened to at least float32 (bf16 params get float32
        moments). Math always runs in at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adam(b2=0.99), optix.scale_lr(1e-3))

    Reference: Kingma & Ba, `Adam: a method for stochastic optimization
    <https://arxiv.org/abs/1412.6980>`_, ICLR 2015; Reddi, Kale & Kumar, `On the convergence of
    Adam and beyond <https://openreview.net/forum?id=ryQu7f-RZ>`_, ICLR 2018 (AMSGrad).
    """

    def init(params):
        mu, nu = first_and_second_moments(params, mu_dtype, nu_dtype)
        nu_max = jax.tree.map(jnp.copy, nu) if amsgrad else None  # its own buffers (donation)
        return mu, nu, nu_max

    def rule(h):
        b1, b2 = h.b1, h.b2
        # (m / bc1) / (sqrt(v / bc2 + eps_root) + eps), times sqrt(bc2) above and below: the bias
        # corrections become scalars computed once per step, so each element divides once
        bc1, bc2 = _tree.bias_correction(b1, h.t), _tree.bias_correction(b2, h.t)
        step_size, eps_root, eps = jnp.sqrt(bc2) / bc1, h.eps_root * bc2, h.eps * jnp.sqrt(bc2)

        def adam(g, m, v, v_max=None):  # v_max: AMSGrad's running max (None without it)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * _tree.abs_sq(g)
            if v_max is None:
                return step_size * m / (_tree.sqrt_flat_at_zero(v + eps_root) + eps), m, v
            v_max = jnp.maximum(v_max, v)
            return step_size * m / (_tree.sqrt_flat_at_zero(v_max + eps_root) + eps), m, v, v_max

        return adam

    spec = Hyperparams(b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return per_leaf("scale_by_adam", ScaleByAdamState, spec, init=init, rule=rule)


@checked
def adam(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    amsgrad: bool = False,
    *,
    eps_root: NonNegative = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam: steps from bias-corrected first and second moment estimates.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
        \quad \theta_t = \theta_{t-1} - \eta \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    Matches torch.optim.Adam (and optax's ``adam``). With ``amsgrad=True`` the denominator uses
    the running max of ``v_t`` before bias correction, as torch does; optax's ``amsgrad`` takes the
    max after bias correction. For an L2 penalty (torch's ``Adam(weight_decay=...)``), chain
    :func:`add_decayed_weights` in front; for decoupled decay use :func:`adamw`.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      b1, b2: moment decays in [0, 1).
      eps: added to the denominator.
      amsgrad: use AMSGrad's running max of the second moment.
      eps_root: added inside the root (for meta-learning through the optimizer).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optix.adam(1e-2)
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([0.5, -0.5])}, state, params)
      >>> optix.apply_updates(params, updates)["w"]
      Array([ 0.99, -1.99], dtype=float32)

    Reference: Kingma & Ba, `Adam: a method for stochastic optimization
    <https://arxiv.org/abs/1412.6980>`_, ICLR 2015; Reddi, Kale & Kumar, `On the convergence of
    Adam and beyond <https://openreview.net/forum?id=ryQu7f-RZ>`_, ICLR 2018 (AMSGrad).
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_lr(learning_rate),
    )


@checked
def adamw(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 1e-2,
    mask: Any | Callable[[Params], Any] | None = None,
    amsgrad: bool = False,
    *,
    eps_root: NonNegative = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdamW: Adam with weight decay decoupled from the gradient.

    .. math:: \theta_t = \theta_{t-1} - \eta \big(\text{adam}_t + \lambda \theta_{t-1}\big)

    The decay is multiplied by the learning rate (and so follows its schedule), as in
    torch.optim.AdamW and optax's ``adamw``. For the coupled L2 form instead, use
    ``chain(add_decayed_weights(lam), adam(eta))``.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      b1, b2, eps, amsgrad, eps_root, mu_dtype, nu_dtype: as in :func:`adam`.
      weight_decay: ``lambda`` >= 0.
      mask: which params decay: a pytree of bools or a function ``params -> pytree of bools``
        (commonly: decay matrices, not biases or norm scales).

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
      >>> no_bias = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
      >>> tx = optix.adamw(1e-3, weight_decay=0.05, mask=no_bias)
      >>> state = tx.init(params)

    Reference: Loshchilov & Hutter, `Decoupled weight decay regularization
    <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
