"""Newton's method on a 2-D function, with the Hessian from chaingrad.

f(x, y) = exp(x + 3y - 0.1) + exp(x - 3y - 0.1) + exp(-x - 0.1) is smooth and
strictly convex; its minimum is at x = -ln(2)/2, y = 0. Each Newton step
solves H d = -grad f, and converges quadratically near the minimum.
"""

from __future__ import annotations

import math

import chaingrad as cg
from chaingrad.autodiff import grad, hessian


def f(p: list[cg.Value]) -> cg.Value:
    """The function to minimise."""
    x, y = p
    return (x + 3 * y - 0.1).exp() + (x - 3 * y - 0.1).exp() + (-x - 0.1).exp()


def newton(start: tuple[float, float], steps: int = 10, tol: float = 1e-12) -> list[tuple[float, float]]:
    """Newton iterates from `start` until the step is shorter than tol."""
    x, y = start
    path = [(x, y)]
    for _ in range(steps):
        g = grad(lambda a, b: f([a, b]), argnums=(0, 1))(x, y)
        gx, gy = g[0].data, g[1].data
        (a, b), (c, d) = hessian(f, [x, y])
        det = a * d - b * c
        dx, dy = -(d * gx - b * gy) / det, -(a * gy - c * gx) / det  # solve H [dx dy] = -g
        x, y = x + dx, y + dy
        path.append((x, y))
        if math.hypot(dx, dy) < tol:
            break
    return path


if __name__ == "__main__":
    path = newton((-1.0, 1.0))
    for k, (x, y) in enumerate(path):
        print(f"step {k}: x = {x:+.12f}  y = {y:+.12f}  f = {f([cg.Value(x), cg.Value(y)]).data:.12f}")
    print(f"exact minimum: x = {-math.log(2) / 2:+.12f}  y = {0.0:+.12f}")
