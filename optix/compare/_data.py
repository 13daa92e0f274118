r"""The data of the built-in workloads: shipped with scikit-learn, or generated from a fixed seed.

Nothing is downloaded. Every function here returns the same arrays on every call (fixed seeds),
as NumPy ``(x, y)`` pairs for the train, validation and test splits, which never share an example.

- :func:`digits`: scikit-learn's 1797 8x8 handwritten digits (the UCI optical digits test set),
  split 1150 / 287 / 360; the 360 test digits are those the older ``optix.compare`` problems
  held out. Pixels are standardised with the training split's mean and standard deviation.
- :func:`markov_language`: sequences of a random order-2 Markov chain over a few symbols, for
  next-token prediction; the chain's own conditional probabilities give the lowest reachable
  loss (:func:`bayes_loss`).
- :func:`friedman`: Friedman's nonlinear regression #1,
  ``y = 10 sin(pi x1 x2) + 20 (x3 - 1/2)^2 + 10 x4 + 5 x5 + noise`` with five extra inputs that do
  not matter (Friedman, `Multivariate adaptive regression splines
  <https://doi.org/10.1214/aos/1176347963>`_, 1991).
"""

from __future__ import annotations

import functools

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray]
Splits = tuple[Arrays, Arrays, Arrays]


def _split(x: np.ndarray, y: np.ndarray, n_valid: int, n_test: int) -> Splits:
    """The last ``n_test`` examples are the test split, the ``n_valid`` before them validation."""
    n_train = len(y) - n_valid - n_test
    cut = (n_train, n_train + n_valid)
    return (
        (x[: cut[0]], y[: cut[0]]),
        (x[cut[0] : cut[1]], y[cut[0] : cut[1]]),
        (x[cut[1] :], y[cut[1] :]),
    )


@functools.cache
def shuffled_digits() -> Arrays:
    """scikit-learn's 8x8 digits in a fixed shuffled order: float32 rows of 64 raw pixels and int32
    labels 0-9 (the digits problems and workloads both split this order)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits problems and workloads need scikit-learn, which ships the data set: "
            "pip install 'optix[compare]'"
        ) from err
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    return x[order].astype(np.float32), y[order].astype(np.int32)


@functools.cache
def digits() -> Splits:
    """The 8x8 digits as flat float32 rows of 64 standardised pixels and int32 labels 0-9."""
    x, y = shuffled_digits()
    (xtr, ytr), valid, test = _split(x, y, n_valid=287, n_test=360)
    mean, std = xtr.mean(0), xtr.std(0)
    scale = np.where(std > 0, std, np.float32(1.0)).astype(np.float32)
    splits = ((xtr, ytr), valid, test)
    return tuple(((xs - mean) / scale, ys) for xs, ys in splits)  # type: ignore[return-value]


@functools.cache
def _markov_chain(vocab: int, seed: int) -> np.ndarray:
    """``p[a, b, c]``: the probability of ``c`` after ``a, b``; each row is peaked on a few symbols."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(vocab, 0.2), size=(vocab, vocab))


def _sample_chain(p: np.ndarray, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    vocab = p.shape[0]
    seq = np.empty((n, length), np.int32)
    seq[:, :2] = rng.integers(0, vocab, size=(n, 2))
    cdf = np.cumsum(p, axis=-1)
    for t in range(2, length):
        u = rng.random((n, 1))
        rows = cdf[seq[:, t - 2], seq[:, t - 1]]
        seq[:, t] = np.minimum((u > rows).sum(-1), vocab - 1)
    return seq


@functools.cache
def markov_language(
    vocab: int = 8, length: int = 16, sizes: tuple[int, int, int] = (512, 256, 256)
) -> Splits:
    """Next-token prediction: ``x`` holds tokens ``0..length-1``, ``y`` the tokens one step later.

    Both are int32 arrays of shape ``(n, length)``; sequences start with two uniform symbols, and
    no sequence occurs twice.
    """
    p = _markov_chain(vocab, 0)
    seq = _sample_chain(p, 2 * sum(sizes), length + 1, np.random.default_rng(1))
    # The chain is peaked, so a sequence can repeat: keep first occurrences, so no split shares one.
    _, first = np.unique(seq[:, :-1], axis=0, return_index=True)
    seq = seq[np.sort(first)[: sum(sizes)]]
    return _split(seq[:, :-1], seq[:, 1:], n_valid=sizes[1], n_test=sizes[2])


def bayes_loss(x: np.ndarray, y: np.ndarray, vocab: int = 8) -> float:
    """The mean cross-entropy of the true chain on ``(x, y)`` from :func:`markov_language`: no
    model can do better on average (the first next token, after one uniform symbol, is uniform)."""
    p = _markov_chain(vocab, 0)
    logp = np.empty(y.shape)
    logp[:, 0] = -np.log(vocab)
    logp[:, 1:] = np.log(p[x[:, :-1], x[:, 1:], y[:, 1:]])
    return float(-logp.mean())


@functools.cache
def friedman(n: int = 1536, noise: float = 1.0, n_valid: int = 256, n_test: int = 256) -> Splits:
    """Friedman #1 on ten U(0, 1) inputs, targets standardised with the training split's mean/std."""
    rng = np.random.default_rng(0)
    x = rng.random((n, 10))
    y = (
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4]
        + noise * rng.normal(size=n)
    )
    (xtr, ytr), valid, test = _split(x.astype(np.float32), y, n_valid, n_test)
    mean, std = ytr.mean(), ytr.std()
    return tuple(  # type: ignore[return-value]
        (xs, ((ys - mean) / std).astype(np.float32)) for xs, ys in ((xtr, ytr), valid, test)
    )
