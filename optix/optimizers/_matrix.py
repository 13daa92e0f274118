"""Matrix optimizers: Muon (with an AdamW fallback for non-matrix leaves), Shampoo and SOAP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
from jax.typing import DTypeLike

from optix import _keypath, _paths, _tree, _validate
from optix._base import GradientTransformation, Params, ScalarOrSchedule
from optix._chain import chain
from optix.transforms._adam import scale_by_adam
from optix.transforms._momentum import scale_by_momentum
from optix.transforms._muon import NS_COEFFS, Coeffs, scale_by_muon
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr
from optix.transforms._shampoo import scale_by_shampoo
from optix.transforms._soap import scale_by_soap
from optix.wrappers._partition import PartitionState, partition

_MUON_LABELS = ("muon", "adam")


def muon_labels(tree: Any, labels: Any = None) -> Any:
    """The ``"muon"``/``"adam"`` label of each leaf of ``tree``, as a tree shaped like it.

    By default a leaf with ``ndim >= 2`` is ``"muon"`` and any other leaf ``"adam"``. ``labels``
    overrides this: a tree of labels, a function ``params -> tree of labels``, or a dict of path
    patterns (first match wins; a leaf no pattern matches keeps the default rule), for example
    ``{"embed/**": "adam", "head/**": "adam"}``.

    Example:
      >>> import jax.numpy as jnp
      >>> from optix.optimizers._matrix import muon_labels
      >>> muon_labels({"w": jnp.zeros((3, 2)), "b": jnp.zeros(2), "emb": jnp.zeros((9, 2))},
      ...             {"emb": "adam"})
      {'b': 'adam', 'emb': 'adam', 'w': 'muon'}
    """
    pairs = jax.tree_util.tree_leaves_with_path(tree)
    rule = ["muon" if len(leaf.shape) >= 2 else "adam" for _, leaf in pairs]
    if labels is None:
        values = rule
    else:  # leaves no pattern matches (or a partial tree leaves out) keep the ndim rule
        default = lambda x: "muon" if len(x.shape) >= 2 else "adam"  # noqa: E731
        values = _paths.resolve_leaves(labels, tree, "`muon` labels", default=default)
    for (path, leaf), value in zip(pairs, values, strict=True):
        if value not in _MUON_LABELS:
            raise ValueError(
                f"`muon` labels: leaf '{_keypath.path_str(path)}' has label {value!r}; "
                "labels must be 'muon' or 'adam'"
            )
        if value == "muon" and len(leaf.shape) < 2:
            raise ValueError(
                f"`muon` labels: leaf '{_keypath.path_str(path)}' of shape {leaf.shape} is "
                "labelled 'muon', but Muon needs ndim >= 2; label it 'adam'"
            )
    return jax.tree.unflatten(jax.tree.structure(tree), values)


def _partition_present(
    transforms: dict[str, GradientTransformation], labels_of: Callable[[Any], Any]
) -> GradientTransformation:
    """:func:`partition` over the labels present in the tree, with a state for every label.

    A label no leaf carries (a model without matrices, or with nothing but matrices, or an empty
    tree) keeps the state its transform builds on a tree of ``None`` and is left alone by
    ``update``. So the state's structure depends on the tree's structure alone, never on which
    labels its leaves take: ``optax.tree.map_params`` (whose stand-in params have no leaves)
    finds the params in it."""

    def split(tree):
        labels = labels_of(tree)
        present = set(jax.tree.leaves(labels))
        inner = {k: v for k, v in transforms.items() if k in present}
        return (partition(inner, labels) if inner else None), present

    def init(params):
        params = _tree.as_arrays(params)
        present_tx, present = split(params)
        states = {} if present_tx is None else dict(present_tx.init(params).inner_states)
        nothing = jax.tree.map(lambda _: None, params)
        for label, tx in transforms.items():
            if label not in present:
                states[label] = tx.init(nothing)
        return PartitionState(states)

    def update(updates, state, params=None, **extra):
        if not (
            isinstance(state, PartitionState)
            and isinstance(state.inner_states, dict)
            and sorted(state.inner_states) == sorted(transforms)
        ):
            raise ValueError(
                f"`muon` expected a PartitionState with inner states for {sorted(transforms)}; "
                "was it built by this optimizer's init?"
            )
        present_tx, present = split(updates if params is None else params)
        if present_tx is None:
            return updates, state
        inner = PartitionState({k: s for k, s in state.inner_states.items() if k in present})
        updates, inner = present_tx.update(updates, inner, params, **extra)
        return updates, PartitionState({**state.inner_states, **inner.inner_states})

    return GradientTransformation(init, update)


def _decay(weight_decay: ScalarOrSchedule, mask: Any) -> list[GradientTransformation]:
    """``add_decayed_weights`` unless the decay is a concrete zero (then no params are needed)."""
    if _validate.concrete_float(weight_decay) == 0.0:
        return []
    return [add_decayed_weights(weight_decay, mask)]


def muon(
    learning_rate: ScalarOrSchedule,
    beta: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-7,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    labels: Any = None,
    ns_steps: int = 5,
    ns_coeffs: Coeffs = NS_COEFFS,
    nesterov: bool = True,
    bias_correction: bool = False,
    eps_mode: Literal["clamp", "add"] = "clamp",
    layout: Literal["in_out", "out_in"] = "in_out",
    scale_mode: Literal["original", "match_rms_adamw", "none"] = "original",
    rms_scale: ScalarOrSchedule = 0.2,
    adam_learning_rate: ScalarOrSchedule | None = None,
    adam_b1: ScalarOrSchedule = 0.9,
    adam_b2: ScalarOrSchedule = 0.999,
    adam_eps: ScalarOrSchedule = 1e-8,
    adam_weight_decay: ScalarOrSchedule = 0.0,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Muon for matrix (and conv) weights, AdamW for everything else.

    .. math::
        B_t = \beta B_{t-1} + (1-\beta) G_t, \quad
        O_t = \mathrm{NS}_5\big((1-\beta) G_t + \beta B_t\big), \quad
        W_t = W_{t-1} - \eta \big(s \, O_t + \lambda W_{t-1}\big)

    for each leaf labelled ``"muon"`` (see :func:`scale_by_muon` for ``NS`` and the scale ``s``);
    each leaf labelled ``"adam"`` takes an AdamW step with the ``adam_*`` settings. By default a
    leaf is ``"muon"`` when ``ndim >= 2`` (conv kernels are orthogonalised as 2-D views) and
    ``"adam"`` otherwise; embeddings and output heads are matrices that Muon's authors leave to
    AdamW: label them with ``labels={"embed/**": "adam", ...}``. The state has both branches
    even when no leaf takes one of them (that branch holds no buffers and is left alone), so its
    structure depends only on the params tree's. Complex matrices are orthogonalised with the
    conjugate transpose, as in optax.

    With ``layout="out_in"`` (torch's weight layout) this is torch.optim.Muon on the matrices
    (``adjust_lr_fn="original"`` or ``"match_rms_adamw"``), step for step: momentum without bias
    correction, ``eps`` clamping the norm, decay ``lr * lambda * W`` not scaled by ``s``. Set
    ``bias_correction=True, eps_mode="add", eps=1e-8`` for optax.contrib.muon's Muon branch on
    ``(in, out)`` weights; optax's Adam branch is Nesterov Adam, optix's is plain AdamW. Math runs
    in float32 or wider; torch runs Newton-Schulz in bfloat16.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule; shared by both branches unless
        ``adam_learning_rate`` is given (then each branch has its own ``learning_rate``,
        addressed as ``"muon/learning_rate"`` and ``"adam/learning_rate"``).
      beta: Muon's momentum decay.
      eps: Newton-Schulz normalisation guard (torch's 1e-7).
      weight_decay: decoupled decay ``lambda`` of the Muon branch (torch's default is 0.1, optax's
        0).
      mask: which params decay (both branches): a tree of bools, a function or path patterns.
      labels: ``"muon"``/``"adam"`` per leaf: a tree, a function of the params, or path patterns
        (leaves no pattern matches keep the ``ndim >= 2`` rule). See :func:`muon_labels`.
      ns_steps, ns_coeffs, nesterov, bias_correction, eps_mode, layout, scale_mode, rms_scale,
        mu_dtype: see :func:`scale_by_muon`.
      adam_learning_rate: a separate rate for the AdamW branch; default: ``learning_rate``.
      adam_b1, adam_b2, adam_eps, adam_weight_decay: the AdamW branch's settings.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
      >>> tx = optix.muon(0.02)
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.eye(4, 3), "b": jnp.ones(3)}, state, params)
      >>> updates["b"]  # AdamW's first step: -lr * sign(g)
      Array([-0.02, -0.02, -0.02], dtype=float32)
      >>> s = jnp.linalg.svd(updates["w"], compute_uv=False)  # equal singular values
      >>> bool(jnp.allclose(s, s[0], rtol=1e-5))
      True

    Reference: Jordan et al., "Muon: an optimizer for hidden layers in neural networks", 2024
    (https://kellerjordan.github.io/posts/muon/); Liu et al., "Muon is scalable for LLM
    training", 2025.
    """
    # the AdamW branch's settings, checked under the names the caller wrote
    if adam_learning_rate is not None:
        _validate.check_nonnegative("adam_learning_rate", adam_learning_rate)
    _validate.check_unit_interval("adam_b1", adam_b1)
    _validate.check_unit_interval("adam_b2", adam_b2)
    _validate.check_nonnegative("adam_eps", adam_eps)
    _validate.check_nonnegative("adam_weight_decay", adam_weight_decay)
    muon_tx = [
        scale_by_muon(
            beta,
            eps,
            ns_steps=ns_steps,
            ns_coeffs=ns_coeffs,
            nesterov=nesterov,
            bias_correction=bias_correction,
            eps_mode=eps_mode,
            layout=layout,
            scale_mode=scale_mode,
            rms_scale=rms_scale,
            mu_dtype=mu_dtype,
        ),
        *_decay(weight_decay, mask),
    ]
    adam_tx = [
        scale_by_adam(adam_b1, adam_b2, adam_eps, mu_dtype=mu_dtype),
        *_decay(adam_weight_decay, mask),
    ]
    labels_of = lambda tree: muon_labels(tree, labels)  # noqa: E731
    if adam_learning_rate is None:
        branches = {"muon": chain(*muon_tx), "adam": chain(*adam_tx)}
        return chain(_partition_present(branches, labels_of), scale_lr(learning_rate))
    branches = {
        "muon": chain(*muon_tx, scale_lr(learning_rate)),
        "adam": chain(*adam_tx, scale_lr(adam_learning_rate)),
    }
    return _partition_present(branches, labels_of)


def shampoo(
    learning_rate: ScalarOrSchedule,
    eps: ScalarOrSchedule = 1e-6,
    stat_decay: ScalarOrSchedule = 1.0,
    momentum: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    nesterov: bool = False,
    precondition_frequency: int = 1,
    block_size: int | None = None,
    max_precond_dim: int = 1024,
    graft: Literal["none", "adagrad", "adam"] = "none",
    graft_eps: ScalarOrSchedule = 1e-8,
    graft_b2: ScalarOrSchedule = 0.999,
    stat_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Shampoo: each matrix preconditioned on both sides by inverse fourth roots of its statistics.

    .. math::
        L_t = L_{t-1} + G_t G_t^T, \quad R_t = R_{t-1} + G_t^T G_t, \quad
        W_{t+1} = W_t - \eta \, (L_t + \epsilon I)^{-1/4} G_t (R_t + \epsilon I)^{-1/4}

    This is the paper's Algorithm 1 with its practical options: blocks, a root refresh every
    ``precondition_frequency`` steps, an EMA of the statistics (``stat_decay < 1``), layer-wise
    grafting onto AdaGrad's or Adam's step norm, then heavy-ball momentum (after grafting, as in
    the scalable implementation) and decoupled weight decay. Scalars and vectors take diagonal
    AdaGrad. See :func:`scale_by_shampoo` for the details and the float32 damping.

    optax has no Shampoo; optix's is checked against a NumPy transcription of the paper's
    algorithm.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      eps, stat_decay, precondition_frequency, block_size, max_precond_dim, graft, graft_eps,
        graft_b2, stat_dtype: see :func:`scale_by_shampoo`.
      momentum: heavy-ball momentum in [0, 1) on the preconditioned step (0: none).
      weight_decay: decoupled decay ``lambda`` (multiplied by the learning rate).
      mask: which params decay: a tree of bools, a function or path patterns.
      nesterov: Nesterov momentum.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((2, 2))}
      >>> tx = optix.shampoo(0.1)
      >>> state = tx.init(params)
      >>> g = {"w": jnp.array([[2.0, 0.0], [0.0, 0.5]])}
      >>> updates, state = tx.update(g, state, params)
      >>> updates["w"]  # (G G^T)^{-1/4} G (G^T G)^{-1/4} = sign(G) for a diagonal G
      Array([[-0.1, -0. ],
             [-0. , -0.1]], dtype=float32)

    Reference: Gupta, Koren & Singer, "Shampoo: preconditioned stochastic tensor optimization",
    ICML 2018; Anil et al., "Scalable second order optimization for deep learning", 2020.
    """
    moment = []
    if _validate.concrete_float(momentum) != 0.0:
        moment = [scale_by_momentum(momentum, nesterov=nesterov)]
    return chain(
        scale_by_shampoo(
            eps,
            stat_decay,
            precondition_frequency=precondition_frequency,
            block_size=block_size,
            max_precond_dim=max_precond_dim,
            graft=graft,
            graft_eps=graft_eps,
            graft_b2=graft_b2,
            stat_dtype=stat_dtype,
        ),
        *moment,
        *_decay(weight_decay, mask),
        scale_lr(learning_rate),
    )


def soap(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.01,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    shampoo_beta: ScalarOrSchedule | None = None,
    precondition_frequency: int = 10,
    block_size: int | None = None,
    max_precond_dim: int = 10000,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    stat_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""SOAP: AdamW run in the eigenbasis of Shampoo's preconditioner, refreshed every few steps.

    .. math::
        W_t = W_{t-1} - \eta \Big(\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}
        Q_L \frac{Q_L^T M_t Q_R}{\sqrt{V_t} + \epsilon} Q_R^T + \lambda W_{t-1}\Big)

    See :func:`scale_by_soap` for ``M``, ``V`` and the bases. Defaults are the authors'
    (``b1 = b2 = 0.95``, refresh every 10 steps, decay 0.01). The decay is applied to the
    parameters before the step, as in :func:`optix.adamw`; the authors' code decays the
    parameters after the step, which differs by ``eta^2 lambda`` times the step. As in the authors'
    code, the first step only gathers statistics and does not move the parameters (except by
    weight decay).

    optax has no SOAP; optix's is checked against a NumPy transcription of the paper's algorithm.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule (the authors use 3e-3).
      b1, b2, eps, shampoo_beta, precondition_frequency, block_size, max_precond_dim, mu_dtype,
        nu_dtype, stat_dtype: see :func:`scale_by_soap`.
      weight_decay: decoupled decay ``lambda`` (multiplied by the learning rate).
      mask: which params decay: a tree of bools, a function or path patterns.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
      >>> tx = optix.soap(3e-3, weight_decay=0.0)
      >>> state = tx.init(params)
      >>> g = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
      >>> updates, state = tx.update(g, state, params)  # the first step gathers statistics
      >>> float(abs(updates["w"]).max())
      0.0
      >>> updates, state = tx.update(g, state, params)
      >>> updates["b"]  # Adam's first step on a vector: -lr * sign(g)
      Array([-0.003, -0.003], dtype=float32)

    Reference: Vyas et al., "SOAP: improving and stabilizing Shampoo using Adam", ICLR 2025
    (arXiv:2409.11321).
    """
    return chain(
        scale_by_soap(
            b1,
            b2,
            eps,
            shampoo_beta,
            precondition_frequency=precondition_frequency,
            block_size=block_size,
            max_precond_dim=max_precond_dim,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
            stat_dtype=stat_dtype,
        ),
        *_decay(weight_decay, mask),
        scale_lr(learning_rate),
    )
