"""The README's example: build an expression, backpropagate, read the gradients."""

from chaingrad import Value

x = Value(2.0, label="x")
w = Value(-3.0, label="w")
y = (w * x + 1).tanh()
y.backward()
print(f"y = {y.data:.6f}, dy/dx = {x.grad:.6f}, dy/dw = {w.grad:.6f}")
