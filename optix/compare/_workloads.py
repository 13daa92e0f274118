r"""Workloads: what an optimizer is compared on (a model, its data splits, a target and a budget).

A :class:`Workload` bundles ``init(seed) -> params``, ``loss(params, batch)``, train / validation /
test :class:`Split` s, the validation ``target`` to reach on its ``metric`` and a step ``budget``.
Hyperparameters are selected on the validation split only; the test split is reported beside.
Data-free workloads (the 2-D landscapes and the quadratic) have no splits: every batch is
``None`` and the loss itself is the metric.

The built-in workloads (:data:`WORKLOADS`) cover what the choice of an optimizer depends on:
classifiers of the 8x8 digits (a linear model, an MLP and a CNN: CNNs tend to do well with SGD
and momentum), sequence models on a generated language (a GRU and a small transformer: recurrent
networks tend to need Adam-like methods), a nonlinear regression, and 2-D landscapes with saddle
points and local minima for pictures. All data ship with scikit-learn or are generated from
fixed seeds; nothing is downloaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optix.compare import _data
from optix.compare import _nets
from optix.compare import _problems

Batch = tuple[jax.Array, jax.Array] | None

KINDS = ("classification", "regression", "sequence", "landscape", "other")
METRICS = ("loss", "error")


@dataclass(frozen=True)
class Split:
    """One split of a data set: inputs ``x`` and labels or targets ``y``, examples on axis 0.

    NumPy arrays are converted to JAX arrays.
    """

    x: jax.Array
    y: jax.Array

    def __post_init__(self) -> None:
        for name in ("x", "y"):
            value = getattr(self, name)
            try:
                arr = jnp.asarray(value)
            except TypeError as err:
                raise ValueError(
                    f"Split.{name} must be an array, got {type(value).__name__}"
                ) from err
            if arr.ndim < 1 or arr.shape[0] == 0:
                raise ValueError(
                    f"Split.{name} needs a leading axis of examples, got shape {arr.shape}"
                )
            object.__setattr__(self, name, arr)
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"Split.x and Split.y must hold the same number of examples, got {self.x.shape[0]} "
                f"and {self.y.shape[0]}"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ValueError(f"Workload.{field} {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class Workload:
    r"""A model, its data, and the validation target an optimizer must reach within a budget.

    Attributes:
      name: its name on the command line.
      init: ``init(seed) -> params`` (float32), deterministic in ``seed``; the built-in ones are
        pure JAX, so ``jax.vmap(init)(seeds)`` works.
      loss: ``loss(params, batch) -> scalar`` mean loss; ``batch`` is ``(x, y)`` or ``None``
        (data-free workloads).
      target: a run reaches the target at the first evaluation whose validation ``metric`` is
        ``<= target`` (lower is better).
      train, valid, test: the splits; all ``None`` for a data-free workload. Selection always uses
        ``valid`` (the loss itself when there are no data); ``test`` is only reported.
      metric: ``"loss"`` or ``"error"`` (``1 - accuracy``; needs ``predict``).
      predict: ``predict(params, x) -> logits``, classes on the last axis, for classifiers.
      budget: the step budget.
      batch_size: examples per step, ``None`` for the full training split.
      eval_every: steps between validation evaluations.
      description: one line for the report.
      kind: ``"classification"``, ``"regression"``, ``"sequence"``, ``"landscape"`` or ``"other"``.
      f_min: the known minimum of the loss (plots show ``loss - f_min``).
      box: ``((x_lo, x_hi), (y_lo, y_hi))`` to draw a 2-D landscape in.
      minima: points to mark on that drawing.

    Example:
      >>> import jax.numpy as jnp
      >>> import optix
      >>> x = jnp.linspace(-1.0, 1.0, 32)[:, None]
      >>> split = optix.compare.Split(x, 3.0 * x[:, 0])
      >>> w = optix.compare.Workload(
      ...     name="line", init=lambda seed: jnp.zeros(1),
      ...     loss=lambda p, b: jnp.mean((b[0] @ p - b[1]) ** 2),
      ...     target=1e-2, train=split, valid=split, batch_size=8)
      >>> float(w.metric_value(jnp.array([3.0]), w.valid))
      0.0
    """

    name: str
    init: Callable[[int], Any]
    loss: Callable[[Any, Any], jax.Array]
    target: float
    train: Split | None = None
    valid: Split | None = None
    test: Split | None = None
    metric: str = "loss"
    predict: Callable[[Any, jax.Array], jax.Array] | None = None
    budget: int = 500
    batch_size: int | None = 64
    eval_every: int = 10
    description: str = ""
    kind: str = "other"
    f_min: float = 0.0
    box: tuple[tuple[float, float], tuple[float, float]] | None = None
    minima: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and bool(self.name), "name", "must be a non-empty string")
        for field in ("init", "loss"):
            _check(callable(getattr(self, field)), field, "must be callable")
        _check(
            self.predict is None or callable(self.predict), "predict", "must be callable or None"
        )
        for field in ("target", "f_min"):
            value = getattr(self, field)
            ok = isinstance(value, int | float | np.number) and math.isfinite(value)
            _check(
                ok and not isinstance(value, bool), field, f"must be a finite number, got {value!r}"
            )
            object.__setattr__(self, field, float(value))
        for field in ("train", "valid", "test"):
            value = getattr(self, field)
            _check(value is None or isinstance(value, Split), field, "must be a Split or None")
        if self.train is None:
            _check(self.valid is None and self.test is None, "valid",
                   "must be None when train is None (a data-free workload)")  # fmt: skip
        else:
            _check(
                self.valid is not None, "valid", "is needed when train is set (selection uses it)"
            )
            shapes = {s.x.shape[1:] for s in (self.train, self.valid, self.test) if s is not None}
            _check(len(shapes) == 1, "valid", f"inputs must match train's shape, got {shapes}")
        _check(self.metric in METRICS, "metric", f"must be one of {METRICS}, got {self.metric!r}")
        _check(self.metric != "error" or self.predict is not None, "predict",
               'is needed for metric "error"')  # fmt: skip
        _check(self.metric != "error" or self.train is not None, "metric",
               '"error" needs data (train is None)')  # fmt: skip
        _check(_is_int(self.budget) and self.budget > 0, "budget",
               f"must be a positive int, got {self.budget!r}")  # fmt: skip
        _check(_is_int(self.eval_every) and 0 < self.eval_every <= self.budget, "eval_every",
               f"must be an int in [1, budget={self.budget}], got {self.eval_every!r}")  # fmt: skip
        if self.batch_size is not None:
            n = len(self.train) if self.train is not None else None
            ok = (
                _is_int(self.batch_size)
                and self.batch_size > 0
                and (n is None or self.batch_size <= n)
            )
            _check(ok, "batch_size", f"must be None or an int in [1, {n}], got {self.batch_size!r}")
        _check(isinstance(self.description, str), "description", "must be a string")
        _check(self.kind in KINDS, "kind", f"must be one of {KINDS}, got {self.kind!r}")
        if self.box is not None:
            try:
                box = tuple((float(lo), float(hi)) for lo, hi in self.box)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"Workload.box must be ((x_lo, x_hi), (y_lo, y_hi)), got {self.box!r}"
                ) from err
            _check(len(box) == 2 and all(lo < hi for lo, hi in box), "box",
                   f"must be ((x_lo, x_hi), (y_lo, y_hi)) with lo < hi, got {self.box!r}")  # fmt: skip
            object.__setattr__(self, "box", box)
        try:
            minima = tuple((float(a), float(b)) for a, b in self.minima)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"Workload.minima must be a sequence of (x, y) points, got {self.minima!r}"
            ) from err
        object.__setattr__(self, "minima", minima)

    @property
    def has_data(self) -> bool:
        return self.train is not None

    def evaluate(self, params: Any, split: Split | None) -> dict[str, jax.Array]:
        """``{"loss": mean loss}`` on ``split``, plus ``"error"`` (``1 - accuracy``) when ``predict``
        is set; ``split=None`` (data-free) gives ``{"loss": loss(params, None)}``. Pure JAX: jit and
        vmap over ``params`` work."""
        if split is None:
            return {"loss": self.loss(params, None)}
        out = {"loss": self.loss(params, (split.x, split.y))}
        if self.predict is not None:
            hit = jnp.argmax(self.predict(params, split.x), axis=-1) == split.y
            out["error"] = 1.0 - jnp.mean(hit.astype(jnp.float32))
        return out

    def metric_value(self, params: Any, split: Split | None) -> jax.Array:
        """The selection metric ``evaluate(params, split)[metric]``."""
        return self.evaluate(params, split)[self.metric]


def _classifier(
    name: str, description: str, apply: Callable, init: Callable, splits: _data.Splits, **kw: Any
) -> Workload:
    def loss(params: Any, batch: Batch) -> jax.Array:
        assert batch is not None
        return _nets.cross_entropy(apply(params, batch[0]), batch[1])

    train, valid, test = (Split(jnp.asarray(s[0]), jnp.asarray(s[1])) for s in splits)
    kw = {"metric": "error", "f_min": 0.0, **kw}
    return Workload(name, init, loss, train=train, valid=valid, test=test, predict=apply,
                    description=description, **kw)  # fmt: skip


_DIGITS = "scikit-learn's 8x8 digits (1150 train / 287 valid / 360 test)"


def logistic() -> Workload:
    """Multinomial logistic regression on the digits: convex, the baseline every method solves."""
    return _classifier(
        "logistic", f"multinomial logistic regression on {_DIGITS}", _nets.linear_apply,
        _nets.linear_init(64, 10), _data.digits(), target=0.045, budget=130, kind="classification",
    )  # fmt: skip


def mlp() -> Workload:
    """A one-hidden-layer tanh MLP on the digits: small, non-convex, quick to overfit."""
    return _classifier(
        "mlp", f"one-hidden-layer tanh MLP (64-32-10) on {_DIGITS}", _nets.mlp_apply,
        _nets.mlp_init((64, 32, 10)), _data.digits(), target=0.035, budget=150,
        kind="classification",
    )  # fmt: skip


def cnn() -> Workload:
    """A small CNN on the 8x8 digits: convolutions are where SGD with momentum is said to shine."""
    return _classifier(
        "cnn", f"CNN (two 3x3 convolutions, 8 and 16 channels, avg-pooling) on {_DIGITS}",
        _nets.cnn_apply, _nets.cnn_init(), _data.digits(), target=0.03, budget=200,
        kind="classification",
    )  # fmt: skip


def _language(name: str, description: str, apply: Callable, init: Callable, **kw: Any) -> Workload:
    splits = _data.markov_language()
    bayes = _data.bayes_loss(*splits[1])
    description = (f"{description}: next-token prediction on a generated order-2 Markov language "
                   "(8 symbols, length 16; 512 / 256 / 256 sequences)")  # fmt: skip
    return _classifier(name, description, apply, init, splits, kind="sequence", metric="loss",
                       f_min=bayes, **kw)  # fmt: skip


def gru() -> Workload:
    """A GRU language model: recurrent networks are where Adam-like methods are said to shine."""
    return _language("gru", "one-layer GRU (32 units)", _nets.gru_apply, _nets.gru_init(8, 32),
                     target=1.21, budget=200, batch_size=32)  # fmt: skip


def transformer() -> Workload:
    """A one-layer, two-head transformer (d_model 16) on the same language as ``gru``."""
    return _language("transformer", "one-layer transformer (d_model 16, 2 heads)",
                     _nets.transformer_apply, _nets.transformer_init(8, 16, 16),
                     target=1.25, budget=450, batch_size=32)  # fmt: skip


def regression() -> Workload:
    """A tanh MLP (10-32-32-1) fitting Friedman's nonlinear regression #1: a smooth, noisy fit."""

    def loss(params: Any, batch: Batch) -> jax.Array:
        assert batch is not None
        return jnp.mean((_nets.mlp_apply(params, batch[0])[:, 0] - batch[1]) ** 2)

    train, valid, test = (Split(jnp.asarray(s[0]), jnp.asarray(s[1])) for s in _data.friedman())
    return Workload(
        "regression", loss=loss, init=_nets.mlp_init((10, 32, 32, 1)), target=0.1, budget=400,
        train=train, valid=valid, test=test, kind="regression",
        description="tanh MLP (10-32-32-1) on Friedman #1 (1024 / 256 / 256 points, standardised "
        "targets, mean squared error)",
    )  # fmt: skip


def _landscape(problem: _problems.Problem, start: tuple[float, ...], spread: float,
               **kw: Any) -> Workload:  # fmt: skip
    """A data-free workload from one of the older problems: seed 0 starts at ``start``, other
    seeds at ``start`` plus ``spread`` times a standard normal."""
    x0 = jnp.asarray(start, jnp.float32)

    def init(seed: Any) -> jax.Array:
        noise = jax.random.normal(jax.random.PRNGKey(seed), x0.shape, jnp.float32)
        return x0 + jnp.where(jnp.asarray(seed) == 0, 0.0, spread) * noise

    kind = "landscape" if len(start) == 2 else "other"
    kw = {"target": problem.f_min + problem.target, "budget": problem.steps} | kw
    return Workload(
        problem.name, jax.jit(init), problem.loss, batch_size=None, description=problem.description,
        kind=kind, f_min=problem.f_min, box=problem.box, minima=problem.minima, **kw,
    )  # fmt: skip


def rosenbrock() -> Workload:
    """Rosenbrock's curved valley: progress along a narrow, bending floor."""
    return _landscape(_problems.rosenbrock(), (-1.2, 1.0), 0.3, budget=600)


def beale() -> Workload:
    """Beale's function: flat plateaus and steep walls."""
    return _landscape(_problems.beale(), (1.0, 1.4), 0.2, budget=200)


def saddle() -> Workload:
    """A saddle point: starting near it, an optimizer must escape along the unstable direction."""
    return _landscape(_problems.saddle(), (2.0, 1e-3), 0.05, budget=100)


def rastrigin() -> Workload:
    """Rastrigin's function: a grid of local minima around the global one. Its target (the global
    minimum) is meant to be missed: descent from the start settles in a local minimum."""
    return _landscape(_problems.rastrigin(), (3.2, -2.6), 0.5, budget=300)


def quadratic() -> Workload:
    """An ill-conditioned (condition number 1000), rotated 20-D quadratic: where momentum pays."""
    problem = _problems.quadratic()
    return _landscape(problem, (0.0,) * 20, 1.0, budget=300)


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "logistic": logistic,
    "mlp": mlp,
    "cnn": cnn,
    "gru": gru,
    "transformer": transformer,
    "regression": regression,
    "rosenbrock": rosenbrock,
    "beale": beale,
    "saddle": saddle,
    "rastrigin": rastrigin,
    "quadratic": quadratic,
}
"""Every built-in workload, by name: a zero-argument factory."""

DEFAULT_WORKLOADS: tuple[str, ...] = ("mlp", "cnn", "gru", "regression")
"""The workloads of the default run: one of each kind the seeds name (an MLP, a CNN, a recurrent
network, a regression), each a few milliseconds a step for 15 vmapped trials."""
