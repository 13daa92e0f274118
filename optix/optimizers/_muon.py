r"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for matrix-shaped weights, with
AdamW for the other leaves.

Reference: Jordan et al., `Muon: an optimizer for hidden layers in neural networks
<https://kellerjordan.github.io/posts/muon/>`_, 2024; Liu et al., `Muon is scalable for LLM
training <https://arxiv.org/abs/2502.16982>`_, 2025 (the RMS-matching scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
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


class ScaleByMuonState(NamedTuple):
    """State of :func:`scale_by_muon`: the hyperparameters and the momentum buffer."""

    hyperparams: HyperparamState  # beta, eps (and rms_scale with scale_mode="match_rms_adamw")
    mu: Updates  # momentum buffer, an EMA of the gradients


@transform(ScaleByMuonState)
def scale_by_muon(
    beta: Beta = 0.95,
    eps: NonNegative = 1e-7,
    *,
    ns_steps: int = 5,
    ns_coeffs: Coeffs = NS_COEFFS,
    nesterov: bool = True,
    bias_correction: bool = False,
    eps_mode: Literal["clamp", "add"] = "clamp",
    layout: Literal["in_out", "out_in"] = "in_out",
    scale_mode: Literal["original", "match_rms_adamw", "none"] = "original",
    rms_scale: NonNegative = 0.2,
    mu_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
    orthogonalize: Orthogonalize = "newton_schulz",
) -> GradientTransformation:
    r"""Orthogonalise the momentum of each matrix-shaped leaf with Newton-Schulz (Muon).

    .. math::
        B_t = \beta B_{t-1} + (1-\beta) G_t, \quad
        \tilde B_t = \begin{cases}(1-\beta) G_t + \beta B_t & \text{nesterov}\\
        B_t & \text{otherwise}\end{cases}, \quad
        u_t = s \cdot \mathrm{orth}(\tilde B_t)

    with ``orth`` the orthogonaliser chosen by ``orthogonalize``: by default ``NS_k``,
    :func:`~optix.transforms._matrix.newton_schulz` with ``ns_steps`` steps of ``ns_coeffs``.
    Complex leaves are orthogonalised with the conjugate transpose (``U S V^H -> U S' V^H``). Which
    axes of a leaf form the matrix is its :class:`optix.MatrixSpec` (``matrix_spec``): a 2-D leaf is
    one matrix (see ``layout``), a 4-D conv kernel is orthogonalised as a 2-D view and reshaped
    back, a leaf with batch axes (a scanned layer stack, an expert stack) as that many independent
    matrices, each with its own norm and scale ``s``; a leaf of 3 or 5+ axes needs a spec. Every
    leaf must have ``ndim >= 2``: :func:`optix.muon` routes the others to AdamW.

    Conventions: the momentum is the EMA of Jordan's code and torch.optim.Muon, with no bias
    correction by default; ``bias_correction=True`` is optax.contrib.muon's form (``B_t`` divided
    by ``1-beta^t``; with Nesterov, ``beta B_t / (1-beta^{t+1}) + (1-beta) G_t / (1-beta^t)``).

    Args:
      beta: momentum decay in [0, 1).
      eps: guards the normalisation inside Newton-Schulz (see ``eps_mode``).
      ns_steps: Newton-Schulz iterations.
      ns_coeffs: one ``(a, b, c)`` triple, or ``ns_steps`` of them.
      nesterov: use the Nesterov look-ahead (default, as in torch and optax).
      bias_correction: optax's bias-corrected momentum (see above).
      eps_mode: ``"clamp"``: ``X / max(||X||, eps)`` (torch); ``"add"``: ``X / (||X|| + eps)``
        (optax).
      layout: which axis is ``fan_out``. ``"in_out"`` (default; JAX/flax kernels ``(in, out)`` and
        conv ``(..., in, out)``) views a leaf as ``(rest, fan_out)``; ``"out_in"`` (torch
        ``(out, in)``, conv ``(out, in, kh, kw)``) as ``(fan_out, rest)``.
      scale_mode: ``s``. ``"original"``: ``sqrt(max(1, fan_out / fan_in))`` (Jordan; torch's
        default; optax's default for ``(in, out)`` weights); ``"match_rms_adamw"``:
        ``rms_scale * sqrt(max(fan_in, fan_out))`` (Liu et al. 2025; torch's option, optax's
        ``consistent_rms``); ``"none"``: 1.
      rms_scale: the factor >= 0 of ``"match_rms_adamw"`` (0.2 matches AdamW's update RMS).
      mu_dtype: dtype of the momentum buffer; default: the param's dtype widened to at least float32.
      matrix_spec: the :class:`optix.MatrixSpec` of each leaf: a tree of them (a prefix of the
        params; None: the default), a function of the params, or a dict of path patterns such
        as ``{"layers/**": optix.MatrixSpec(batch_axes=(0,))}`` (other leaves: the defaults).
        ``fan_in`` and ``fan_out`` of the scale ``s`` are the sides of each (block) matrix.
      orthogonalize: how the momentum is orthogonalised; each applies to every matrix of the
        stack ``(count, fan_in, fan_out)`` separately (see
        :func:`~optix.transforms._orthogonalize.orthogonalizer`):

        - ``"newton_schulz"`` (default): ``ns_steps`` steps of ``ns_coeffs`` (one triple or one
          per step: any schedule) after dividing by the Frobenius norm;
        - ``"polar_express"``: Polar Express (Amsel et al., `arXiv:2505.16932
          <https://arxiv.org/abs/2505.16932>`_, 2025), ``ns_steps`` steps of the paper's
          optimal degree-5 schedule with its safety factor 1.01 (``ns_coeffs`` must be left
          at its default);
        - ``"aol"``, ``"schatten"``: Newton-Schulz with ``ns_coeffs``, the Frobenius
          normalisation replaced by optax.contrib.muon's ``preconditioning`` of that name
          (AOL row scaling, or the Schatten-4 norm);
        - a callable ``(x) -> y`` on a stack ``x`` of shape ``(count, fan_in, fan_out)`` (float32
          or wider) returning an array of the same shape, e.g. an exact polar factor by SVD. It
          is traced inside the step (it must be jittable); ``eps``, ``ns_steps`` and
          ``ns_coeffs`` do not apply.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.scale_by_muon(orthogonalize="polar_express"), optix.scale_lr(0.02))
      >>> state = tx.init({"w": jnp.zeros((4, 3))})

    Reference: Jordan et al., `Muon: an optimizer for hidden layers in neural networks
    <https://kellerjordan.github.io/posts/muon/>`_, 2024; Liu et al., `Muon is scalable for LLM
    training <https://arxiv.org/abs/2502.16982>`_, 2025 (the RMS-matching scale).
    """
    orth = orthogonalizer(orthogonalize, ns_steps, ns_coeffs, eps_mode)
    _tree.check_state_dtype("mu_dtype", mu_dtype)
    if eps_mode not in ("clamp", "add"):
        raise ValueError(f"`eps_mode` must be 'clamp' or 'add', got {eps_mode!r}")
    if layout not in ("in_out", "out_in"):
        raise ValueError(f"`layout` must be 'in_out' or 'out_in', got {layout!r}")
    if scale_mode not in ("original", "match_rms_adamw", "none"):
        raise ValueError(
            f"`scale_mode` must be 'original', 'match_rms_adamw' or 'none', got {scale_mode!r}"
        )
    extra = {"rms_scale": rms_scale} if scale_mode == "match_rms_adamw" else {}
    spec = Hyperparams(beta=beta, eps=eps, **extra)

    def check_leaves(params):
        """The layout of each leaf (a tree), after checking that every leaf is a float matrix."""
        return matrix_layouts(params, "`scale_by_muon`", matrix_spec, layout == "out_in")

    def init(params):
        check_leaves(params)
        return ScaleByMuonState(spec.init(), _tree.moments_like(params, mu_dtype, name="mu_dtype"))

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_muon")
        layouts = check_leaves(updates)
        h, hyperparams = spec.step(state.hyperparams)
        beta, eps, t = h.beta, h.eps, h.t
        bc_now = _tree.bias_correction(beta, t) if bias_correction else 1
        bc_next = _tree.bias_correction(beta, t + 1) if bias_correction else 1

        def momentum(g, m):
            g, m = _tree.upcast(g), _tree.upcast(m)
            m = beta * m + (1 - beta) * g
            x = beta * m / bc_next + (1 - beta) * g / bc_now if nesterov else m / bc_now
            return x, m

        def scale(o, lay):
            fan_in, fan_out = lay.matrix
            if o.size == 0:  # nothing to scale, and ``fan_in`` may be 0
                return o
            if scale_mode == "original":
                return o * math.sqrt(max(1.0, fan_out / fan_in))
            if scale_mode == "match_rms_adamw":
                return o * (h.rms_scale * math.sqrt(max(fan_in, fan_out)))
            return o

        # leafwise's casts, by hand: the layouts enter the per-leaf math without being state
        xs, mu = _tree.map_leaves(momentum, updates, state.mu, n_out=2)
        # every leaf's (count, fan_in, fan_out) stack, one matrix per batch index and block (none
        # for a leaf without elements), orthogonalised matrix by matrix; under a distribution
        # each device computes only its share of them
        x_leaves, treedef = jax.tree.flatten(xs)
        lays = treedef.flatten_up_to(layouts)
        with jax.numpy_dtype_promotion("standard"):
            stacks = [
                None if lay is None else lay.to_stack(x)
                for x, lay in zip(x_leaves, lays, strict=True)
            ]
            orthed = map_stacks(orth, stacks, (eps,))
            us = [
                x if lay is None else lay.from_stack(scale(o, lay))
                for x, o, lay in zip(x_leaves, orthed, lays, strict=True)
            ]
        updates = jax.tree.map(lambda u, g: u.astype(g.dtype), treedef.unflatten(us), updates)
        mu = jax.tree.map(lambda m, old: m.astype(old.dtype), mu, state.mu)
        return updates, ScaleByMuonState(hyperparams, mu)

    return GradientTransformation(init, update)


@checked
def muon(
    learning_rate: NonNegative,
    beta: Beta = 0.95,
    eps: NonNegative = 1e-7,
    weight_decay: NonNegative = 0.0,
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
    rms_scale: NonNegative = 0.2,
    adam_learning_rate: NonNegativeOrNone = None,
    adam_b1: Beta = 0.9,
    adam_b2: Beta = 0.999,
    adam_eps: NonNegative = 1e-8,
    adam_weight_decay: NonNegative = 0.0,
    mu_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
    orthogonalize: Orthogonalize = "newton_schulz",
) -> GradientTransformation:
    r"""Muon for matrix (and conv) weights, AdamW for everything else.

    .. math::
        B_t = \beta B_{t-1} + (1-\beta) G_t, \quad
        O_t = \mathrm{NS}_5\big((1-\beta) G_t + \beta B_t\big), \quad
        W_t = W_{t-1} - \eta \big(s \, O_t + \lambda W_{t-1}\big)

    for each leaf labelled ``"muon"`` (see :func:`scale_by_muon` for ``NS`` and the scale ``s``);
    each leaf labelled ``"adam"`` takes an AdamW step with the ``adam_*`` settings. By default a
    leaf is ``"muon"`` when it holds a matrix: ``ndim >= 2`` (conv kernels are orthogonalised
    as 2-D views, stacks of matrices as independent matrices given their ``matrix_spec``), and for
    a leaf given a ``matrix_spec``, when its spec leaves a matrix (a stack's biases ``(L, d)``
    under ``MatrixSpec(batch_axes=(0,))`` hold none); it is ``"adam"`` otherwise; embeddings and output heads are matrices that Muon's authors leave to
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
        (leaves no pattern matches keep the default rule above). A ``"muon"`` label on a leaf
        that holds no matrix is an error.
      ns_steps, ns_coeffs, nesterov, bias_correction, eps_mode, layout, scale_mode: see
        :func:`scale_by_muon`.
      rms_scale, mu_dtype: see :func:`scale_by_muon`.
      orthogonalize: ``"newton_schulz"`` (default), ``"polar_express"`` (Amsel et al. 2025),
        ``"aol"``, ``"schatten"`` or a callable on a stack of matrices; see
        :func:`scale_by_muon`.
      matrix_spec: which axes of each ``"muon"`` leaf form its matrices: :class:`optix.MatrixSpec`
        per leaf, as a tree, a function or path patterns (see :func:`scale_by_muon`). A stacked
        leaf ``(L, d_in, d_out)`` (scanned layers, experts) has no default and needs one, e.g.
        ``{"layers/**": optix.MatrixSpec(batch_axes=(0,))}``.
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

    Reference: Jordan et al., `Muon: an optimizer for hidden layers in neural networks
    <https://kellerjordan.github.io/posts/muon/>`_, 2024; Liu et al., `Muon is scalable for LLM
    training <https://arxiv.org/abs/2502.16982>`_, 2025.
    """
    muon_tx = [
        scale_by_muon(**arguments_for(scale_by_muon, locals())),
        *decayed_weights(weight_decay, mask),
    ]
    adam = (adam_learning_rate, adam_b1, adam_b2, adam_eps, adam_weight_decay)
    return matrices_and_the_rest(
        muon_tx, labels, learning_rate, mask, mu_dtype, adam, matrix_spec, layout == "out_in"
    )
