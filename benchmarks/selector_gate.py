"""What the learned feature selector learned: g(t), the weight of the semantic tokens against
the dynamic ones, for every diffusion timestep (t = 999 is pure noise, t = 0 the clean roll).

    python benchmarks/selector_gate.py checkpoints/diffbgm-small docs/eval/selector_gate.png

The rule selector of the paper is the step function g = 1 for t >= 200, else 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="checkpoint folder with selector = 'learned'")
    parser.add_argument("out", type=Path, nargs="?", help="PNG to write")
    args = parser.parse_args()

    from diffbgm.checkpoint import load_checkpoint

    loaded = load_checkpoint(args.model)
    model = loaded.model.float().eval()
    steps = loaded.config.diffusion.num_train_steps
    t = torch.arange(steps)
    with torch.no_grad():
        share = model.semantic_share(t)
    if share is None:
        raise SystemExit(f"{args.model} uses the {loaded.config.selector!r} selector, no gate")
    for step in range(0, steps, steps // 10):
        print(f"t = {step:4d}: semantic share g = {share[step]:.3f}")
    print(f"t = {steps - 1:4d}: semantic share g = {share[-1]:.3f}")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
        ax.plot(t.numpy(), share.numpy(), label="learned g(t)")
        rule = (t >= loaded.config.selector_step).float()
        ax.plot(t.numpy(), rule.numpy(), "--", label="rule (paper): t >= 200")
        ax.set_xlabel("diffusion timestep t (999 = noise)")
        ax.set_ylabel("semantic weight g")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out)


if __name__ == "__main__":
    main()
