"""The built-in problems: 2-D landscapes, an ill-conditioned quadratic, and digits classifiers.

A :class:`Problem` is a loss ``loss(params, batch)``, a way to start (``init(seed)``), and what
the report needs to know about it (its known minimum, a target, the box to draw a 2-D landscape
in). Problems with data (``linear``, ``logistic``, ``mlp``) train on mini-batches drawn from the
training set; the others have no data, so every "batch" is the whole problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optix.compare import _data

Batch = tuple[jax.Array, jax.Array] | None


@dataclass(frozen=True)
class Data:
    """Training and test arrays; ``y`` holds class labels, or regression targets."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array | None = None
    y_test: jax.Array | None = None

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])


@dataclass(frozen=True)
class Problem:
    """One optimization problem.

    Attributes:
      name: its name on the command line.
      description: one line for the report.
      loss: ``loss(params, batch) -> scalar``; ``batch`` is ``(x, y)`` or ``None`` (no data).
      init: ``init(seed) -> params``; seed 0 is the problem's canonical start.
      f_min: the known minimum value (0 where unknown but bounded by 0, as for cross-entropy);
        losses are reported and plotted as ``loss - f_min``.
      target: a run "reaches the target" at the first step where ``loss - f_min <= target``.
      steps: default number of steps.
      data: training (and test) data, or ``None``.
      box: ``((x_lo, x_hi), (y_lo, y_hi))`` for 2-D problems, drawn as a contour plot.
      minima: points marked on the contour plot.
      accuracy: ``accuracy(params, x, y)`` for classifiers, else ``None``.
    """

    name: str
    description: str
    loss: Callable[[Any, Batch], jax.Array]
    init: Callable[[int], Any]
    f_min: float
    target: float
    steps: int
    data: Data | None = None
    box: tuple[tuple[float, float], tuple[float, float]] | None = None
    minima: tuple[tuple[float, float], ...] = ()
    accuracy: Callable[[Any, jax.Array, jax.Array], jax.Array] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def has_data(self) -> bool:
        return self.data is not None

    def train_loss(self, params: Any) -> jax.Array:
        """The loss on the whole training set (or the loss itself, for problems without data)."""
        if self.data is None:
            return self.loss(params, None)
        return self.loss(params, (self.data.x_train, self.data.y_train))


def _point_init(start: tuple[float, float], spread: float) -> Callable[[int], jax.Array]:
    """Seed 0 starts at ``start``; other seeds start at ``start`` plus Gaussian noise."""

    def init(seed: int) -> jax.Array:
        point = np.asarray(start, np.float32)
        if seed:
            point = point + spread * np.random.default_rng(seed).normal(size=2).astype(np.float32)
        return jnp.asarray(point, jnp.float32)

    return init


def rosenbrock() -> Problem:
    def loss(p: jax.Array, batch: Batch) -> jax.Array:
        x, y = p[0], p[1]
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    return Problem(
        "rosenbrock", "Rosenbrock's banana valley (1-x)^2 + 100(y-x^2)^2, minimum 0 at (1, 1)",
        loss, _point_init((-1.2, 1.0), 0.3), f_min=0.0, target=1e-3, steps=1000,
        box=((-2.0, 2.0), (-1.0, 3.0)), minima=((1.0, 1.0),),
    )  # fmt: skip


def beale() -> Problem:
    def loss(p: jax.Array, batch: Batch) -> jax.Array:
        x, y = p[0], p[1]
        return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2

    return Problem(
        "beale", "Beale's function: flat plateaus and steep walls, minimum 0 at (3, 0.5)",
        loss, _point_init((1.0, 1.4), 0.2), f_min=0.0, target=1e-3, steps=1000,
        box=((-1.0, 4.5), (-1.5, 2.0)), minima=((3.0, 0.5),),
    )  # fmt: skip


def saddle() -> Problem:
    def loss(p: jax.Array, batch: Batch) -> jax.Array:
        x, y = p[0], p[1]
        return x**2 / 2 + y**4 / 4 - y**2 / 2

    return Problem(
        "saddle", "x^2/2 + y^4/4 - y^2/2: a saddle at (0, 0) between minima -1/4 at (0, +-1)",
        loss, _point_init((2.0, 1e-3), 0.05), f_min=-0.25, target=1e-3, steps=500,
        box=((-2.5, 2.5), (-1.6, 1.6)), minima=((0.0, 1.0), (0.0, -1.0)),
    )  # fmt: skip


def rastrigin() -> Problem:
    def loss(p: jax.Array, batch: Batch) -> jax.Array:
        return 20 + jnp.sum(p**2 - 10 * jnp.cos(2 * math.pi * p))

    return Problem(
        "rastrigin", "Rastrigin's function: a grid of local minima around the global minimum 0 "
        "at (0, 0)", loss, _point_init((3.2, -2.6), 0.5), f_min=0.0, target=1e-2, steps=500,
        box=((-5.12, 5.12), (-5.12, 5.12)), minima=((0.0, 0.0),),
    )  # fmt: skip


def linear(n: int = 128) -> Problem:
    """Fit a line ``y = a x + b`` to noisy points: a 2-D landscape that has data."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=n).astype(np.float32)
    y = (2.0 * x - 1.0 + 0.3 * rng.normal(size=n)).astype(np.float32)
    design = np.stack([x, np.ones_like(x)], axis=1).astype(np.float64)
    best, *_ = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)
    f_min = float(np.mean((design @ best - y) ** 2) / 2)

    def loss(p: jax.Array, batch: Batch) -> jax.Array:
        assert batch is not None
        xb, yb = batch
        return jnp.mean((p[0] * xb + p[1] - yb) ** 2) / 2

    return Problem(
        "linear", f"least-squares line fit y = a x + b to {n} noisy points (2-D, with data)",
        loss, _point_init((-2.0, 2.0), 0.5), f_min=f_min, target=1e-3, steps=300,
        data=Data(jnp.asarray(x), jnp.asarray(y)), box=((-3.0, 4.0), (-3.0, 3.0)),
        minima=((float(best[0]), float(best[1])),),
    )  # fmt: skip


def quadratic(condition: float = 1000.0, dim: int = 20, rotate: bool = True) -> Problem:
    """``0.5 (w - w*)^T H (w - w*)`` with eigenvalues log-spaced from 1 down to ``1/condition``.

    ``H`` is rotated by a fixed random orthogonal matrix, so no coordinate-wise method gets its
    axes for free.
    """
    if not condition >= 1 or not math.isfinite(condition):
        raise ValueError(f"the condition number must be a finite number >= 1, got {condition}")
    rng = np.random.default_rng(0)
    eig = np.logspace(0.0, -math.log10(condition), dim)
    q = np.linalg.qr(rng.normal(size=(dim, dim)))[0] if rotate else np.eye(dim)
    hess = jnp.asarray((q * eig) @ q.T, jnp.float32)
    w_star = jnp.asarray(rng.normal(size=dim), jnp.float32)

    def loss(w: jax.Array, batch: Batch) -> jax.Array:
        d = w - w_star
        return 0.5 * jnp.dot(d, hess @ d)

    def init(seed: int) -> jax.Array:
        if not seed:
            return jnp.zeros(dim, jnp.float32)
        return jnp.asarray(np.random.default_rng(seed).normal(size=dim), jnp.float32)

    box = ((-3.0, 3.0), (-3.0, 3.0)) if dim == 2 else None
    minima = ((float(w_star[0]), float(w_star[1])),) if dim == 2 else ()
    return Problem(
        "quadratic", f"ill-conditioned quadratic in {dim}-D, condition number {condition:g}",
        loss, init, f_min=0.0, target=1e-3, steps=500, box=box, minima=minima,
        options={"condition": condition, "dim": dim},
    )  # fmt: skip


def _digits() -> Data:
    x, y = _data.shuffled_digits()
    n_train = int(0.8 * len(y))
    mean, std = x[:n_train].mean(0), x[:n_train].std(0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    return Data(
        jnp.asarray(x[:n_train], jnp.float32), jnp.asarray(y[:n_train]),
        jnp.asarray(x[n_train:], jnp.float32), jnp.asarray(y[n_train:]),
    )  # fmt: skip


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def _accuracy(apply: Callable) -> Callable:
    def accuracy(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((jnp.argmax(apply(params, x), axis=1) == y).astype(jnp.float32))

    return accuracy


def _classifier(
    name: str, description: str, apply: Callable, init: Callable, target: float, steps: int
) -> Problem:
    def loss(params: Any, batch: Batch) -> jax.Array:
        assert batch is not None
        return _cross_entropy(apply(params, batch[0]), batch[1])

    return Problem(
        name, description, loss, init, f_min=0.0, target=target, steps=steps, data=_digits(),
        accuracy=_accuracy(apply),
    )  # fmt: skip


def logistic() -> Problem:
    def apply(p: Any, x: jax.Array) -> jax.Array:
        return x @ p["w"] + p["b"]

    def init(seed: int) -> Any:
        w = 0.01 * np.random.default_rng(seed).normal(size=(64, 10))
        return {"w": jnp.asarray(w, jnp.float32), "b": jnp.zeros(10, jnp.float32)}

    return _classifier(
        "logistic", "multinomial logistic regression on scikit-learn's 8x8 digits "
        "(1437 train / 360 test)", apply, init, target=0.1, steps=300,
    )  # fmt: skip


def mlp(hidden: int = 32) -> Problem:
    def apply(p: Any, x: jax.Array) -> jax.Array:
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def init(seed: int) -> Any:
        rng = np.random.default_rng(seed)
        return {
            "w1": jnp.asarray(rng.normal(size=(64, hidden)) / 8.0, jnp.float32),
            "b1": jnp.zeros(hidden, jnp.float32),
            "w2": jnp.asarray(rng.normal(size=(hidden, 10)) / math.sqrt(hidden), jnp.float32),
            "b2": jnp.zeros(10, jnp.float32),
        }

    return _classifier(
        "mlp", f"one-hidden-layer tanh MLP (64-{hidden}-10) on scikit-learn's 8x8 digits",
        apply, init, target=0.05, steps=400,
    )  # fmt: skip


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "rosenbrock": rosenbrock,
    "beale": beale,
    "saddle": saddle,
    "rastrigin": rastrigin,
    "linear": linear,
    "quadratic": quadratic,
    "logistic": logistic,
    "mlp": mlp,
}
"""Every built-in problem, by name."""

DEFAULT_SUITE = ("rosenbrock", "quadratic", "logistic", "mlp")
"""The problems of the default run."""


def make_problem(name: str, *, condition: float | None = None) -> Problem:
    """The built-in problem called ``name`` (``condition`` applies to ``quadratic``)."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; valid problems: {', '.join(PROBLEMS)}")
    if name == "quadratic" and condition is not None:
        return quadratic(condition=condition)
    return PROBLEMS[name]()
