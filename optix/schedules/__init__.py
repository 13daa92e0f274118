"""Learning-rate schedules: plain functions from the int step count to a value.

A schedule is accepted wherever a learning rate (or any other hyperparameter) is.
"""

from optix.schedules._basic import (
    constant as constant,
)
from optix.schedules._basic import (
    exponential_decay as exponential_decay,
)
from optix.schedules._basic import (
    join as join,
)
from optix.schedules._basic import (
    linear as linear,
)
from optix.schedules._basic import (
    piecewise_constant as piecewise_constant,
)
from optix.schedules._basic import (
    polynomial as polynomial,
)
from optix.schedules._cosine import (
    cosine_decay as cosine_decay,
)
from optix.schedules._cosine import (
    warmup_cosine_decay as warmup_cosine_decay,
)

__all__ = [
    "constant",
    "cosine_decay",
    "exponential_decay",
    "join",
    "linear",
    "piecewise_constant",
    "polynomial",
    "warmup_cosine_decay",
]
