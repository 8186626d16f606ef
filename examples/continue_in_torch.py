"""Train microgpt in chaingrad, carry on in PyTorch on batches of names, sample names, and come back.

    python examples/continue_in_torch.py                      # 200 chaingrad steps, then 1000 torch steps
    python examples/continue_in_torch.py --torch-steps 5000   # longer in torch (on CUDA when present)

chaingrad trains one name per step, as `chaingrad demo names` does. `model.to_torch()` then gives the
same network as a torch.nn.Module with the same weights (the same loss on the same name, to about
1e-15 in float64), which trains on a padded batch of names per step. Needs PyTorch:
pip install "chaingrad[torch]".
"""

from __future__ import annotations

import argparse
import random
import time

import torch

import chaingrad as cg
from chaingrad.bridge import pad_batch


def held_out_loss(net: torch.nn.Module, names: list[list[int]]) -> float:
    """The mean next-character loss of the torch model over these encoded names, in one batch."""
    device = next(net.parameters()).device
    with torch.no_grad():
        return net(*pad_batch(names, net.block_size, device=device)).item()


def main(argv: list[str] | None = None) -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chaingrad-steps", type=int, default=200, help="one name per step (default: 200)")
    parser.add_argument("--torch-steps", type=int, default=1000, help="one batch per step (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=32, help="names per torch step (default: 32)")
    parser.add_argument("--samples", type=int, default=10, help="names to sample at the end (default: 10)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cuda" if cuda else "cpu", help="default: cuda when present")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float32" if cuda else "float64")
    args = parser.parse_args(argv)
    if args.device == "cpu":  # a model this small runs fastest on one thread, and steadily on a busy machine
        torch.set_num_threads(1)

    docs = cg.data.load_names()
    tok = cg.data.CharTokenizer(docs)
    rng = random.Random(args.seed)
    rng.shuffle(docs)
    train, held_out = docs[:-1000], [tok.encode(d) for d in docs[-1000:]]

    # 1. chaingrad: one name per step, every number a Value
    model = cg.nn.GPT(tok.vocab_size, n_embd=16, n_head=4, n_layer=1, block_size=16, seed=rng)
    opt = cg.optim.Adam(model.parameters(), lr=0.01, betas=(0.85, 0.99), eps=1e-8)
    start = time.perf_counter()
    for step in range(args.chaingrad_steps):
        loss = model.loss(tok.encode(train[step % len(train)])[: model.block_size + 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"chaingrad: {args.chaingrad_steps} steps of one name in {time.perf_counter() - start:.1f} s")

    # 2. the same network in PyTorch: same weights, same numbers
    net = model.to_torch(dtype=getattr(torch, args.dtype)).to(args.device)
    name = held_out[0]
    print(
        f"the loss on {tok.decode(name)!r}: chaingrad {model.loss(name).data:.10f}, "
        f"PyTorch {held_out_loss(net, [name]):.10f} ({args.dtype} on {args.device})"
    )
    before = held_out_loss(net, held_out)

    # 3. keep training in PyTorch, a padded batch of names per step
    opt = torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.85, 0.99), eps=1e-8)
    schedule = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=max(args.torch_steps, 1))
    start = time.perf_counter()
    for _ in range(args.torch_steps):
        batch = [tok.encode(d) for d in rng.sample(train, args.batch_size)]
        loss = net(*pad_batch(batch, net.block_size, device=args.device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    seconds = time.perf_counter() - start
    print(f"PyTorch: {args.torch_steps} steps of {args.batch_size} names in {seconds:.1f} s")
    after = held_out_loss(net, held_out)
    print(f"loss on {len(held_out)} held-out names: {before:.4f} before PyTorch, {after:.4f} after")

    # 4. sample new names from the torch model
    generator = torch.Generator().manual_seed(args.seed)
    known = set(docs)
    print(f"{args.samples} names sampled at temperature 0.5 (* = not in the training list):")
    for i in range(1, args.samples + 1):
        new = tok.decode(net.generate(tok.bos, temperature=0.5, generator=generator, stop=tok.bos))
        print(f"  {i:2d}. {new or '(empty)'}{'' if new in known else ' *'}")

    # 5. and back: the trained weights in chaingrad again (model.save(path) would keep them)
    back = cg.nn.GPT.from_torch(net)
    print(
        f"back in chaingrad, the loss on {tok.decode(name)!r}: chaingrad {back.loss(name).data:.10f}, "
        f"PyTorch {held_out_loss(net, [name]):.10f}"
    )


if __name__ == "__main__":
    main()
