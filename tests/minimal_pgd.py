"""A minimal Linf PGD in plain PyTorch, written for the cross-check test (python/robustlab_crosscheck.py
--with tests/minimal_pgd.py): independent of robustlab's code, with robustlab's evaluation semantics. Each
step x <- clip(x + step_size * sign(grad of the summed cross-entropy)) into the eps-box and [0, 1]; an
example counts as fooled when any iterate after the first step fools it, and that first fooling iterate is
returned (else the last one)."""
import torch
import torch.nn.functional as F


def attack(model, x, y, eps, norm, steps, step_size, random_start, seed):
    assert norm == "linf", "this minimal PGD is Linf only"
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    cur = x.clone()
    if random_start:
        g = torch.Generator().manual_seed(seed)
        cur = torch.min(torch.max(x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps, lower), upper)
    best, fooled = cur.clone(), torch.zeros(len(x), dtype=torch.bool)
    for _ in range(steps):
        cur = cur.detach().requires_grad_(True)
        loss = F.cross_entropy(model(cur), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, cur)
        cur = torch.min(torch.max(cur.detach() + step_size * grad.sign(), lower), upper)
        with torch.no_grad():
            won = model(cur).argmax(1).ne(y)
        newly = won & ~fooled
        best[newly] = cur[newly]
        fooled |= won
    best[~fooled] = cur[~fooled]
    return best
