"""chaingrad.memory: a model whose parameters cannot fit is refused before anything is allocated, with
the parameter count and the memory it needs; the count is the count the model gets."""

from __future__ import annotations

import tracemalloc

import pytest

from chaingrad import memory, nn

# ---------------------------------------------------------------------------
# Sizes that cannot fit: refused before anything is allocated
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, count",
    [
        (lambda: nn.MLP(2, [10**9]), "3,000,000,000 parameters"),
        (lambda: nn.MLP(10**9, [1]), "1,000,000,001 parameters"),
        (lambda: nn.GPT(10**9), "32,000,003,328 parameters"),
        (lambda: nn.Linear(10**5, 10**5), "10,000,100,000 parameters"),
        (lambda: nn.Layer(10**6, 10**4), "10,000,010,000 parameters"),
        (lambda: nn.Embedding(10**6, 10**6), "1,000,000,000,000 parameters"),
    ],
    ids=["MLP wide", "MLP many inputs", "GPT", "Linear", "Layer", "Embedding"],
)
def test_a_model_that_cannot_fit_is_refused_before_allocating(make, count, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * 2**30)  # as under a 2 GiB cap
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=f"would have {count}, about .* GiB .* more than the 2.0 GiB"):
            make()
        assert tracemalloc.get_traced_memory()[1] < 2**20, "it allocated before refusing"
    finally:
        tracemalloc.stop()


def test_the_real_machine_refuses_the_issues_models_at_once():
    # no cap: the machine's own available memory (no machine has the terabytes these need)
    for make in (lambda: nn.MLP(2, [10**12]), lambda: nn.GPT(10**12), lambda: nn.Linear(10**6, 10**6)):
        with pytest.raises(MemoryError, match="parameters, about"):
            make()
    assert memory.available_memory() is None or memory.available_memory() > 2**20


def test_a_model_that_fits_is_made_and_the_check_counts_what_is_made(monkeypatch):
    # The count the check uses is the count of parameters the model gets.
    for make in (
        lambda: nn.MLP(3, [5, 4, 2]),
        lambda: nn.GPT(7, n_embd=4, n_head=2, n_layer=2, block_size=3),
        lambda: nn.Linear(4, 3),
        lambda: nn.Linear(4, 3, bias=False),
        lambda: nn.Layer(3, 2),
        lambda: nn.Neuron(5),
        lambda: nn.Embedding(3, 2),
    ):
        counted = []
        real = nn.check_fits
        monkeypatch.setattr(nn, "check_fits", lambda n, what: counted.append(n) or real(n, what))
        model = make()
        monkeypatch.undo()
        assert counted[0] == len(model.parameters()), repr(model)
    monkeypatch.setattr(memory, "available_memory", lambda: 10**6)
    monkeypatch.setattr(memory, "_QUIET_BELOW", 0)
    nn.MLP(2, [16, 16, 1])  # about 100 KB: fits in 1 MB
    with pytest.raises(MemoryError, match="MLP"):
        nn.MLP(2, [100, 100, 1])
