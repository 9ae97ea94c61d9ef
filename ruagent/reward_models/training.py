"""One training loop for stacked ensembles: any per-member loss, bootstrap, per-member early stopping.

Regression on reward labels and Bradley–Terry on preference pairs differ only in the
loss; both go through :func:`train_members`. The loss takes a ``(K, b)`` tensor of item
indices (member k's minibatch of its own bootstrap resample) and returns the ``(K,)``
per-member mean losses, computed in one batched forward. Summing over members keeps their
gradients independent (each tensor slice k only sees member k's loss), so one Adam step
trains all K members as K separate regressions.

With ``shared_batches=True`` the members share every minibatch and the bootstrap enters as
integer weights: member k weights item i by how often its resample drew i (the multinomial
counts of Efron's bootstrap, the same resample distribution; cf. the bootstrap masks of
Osband et al., NeurIPS 2016, and the online bootstrap of Oza & Russell, AISTATS 2001). One
input batch then serves all K members, so callers can share every per-item computation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["train_members"]


def train_members(
    parameters: Sequence[torch.Tensor],
    member_loss: Callable[[torch.Tensor], torch.Tensor],
    n_items: int,
    n_members: int,
    *,
    epochs: int = 300,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    val_fraction: float = 0.1,
    patience: int = 30,
    bootstrap: bool = True,
    generator: torch.Generator | None = None,
    progress_bar: bool = True,
    description: str = "fit reward ensemble",
    shared_batches: bool = False,
) -> dict[str, Any]:
    """Train stacked member parameters (leading axis K) on items ``0..n_items-1``.

    :param parameters: tensors with leading axis K and ``requires_grad``; updated in place,
        and at the end each member's slice is restored to its best held-out epoch.
    :param member_loss: ``indices (K, b) int64 -> (K,)`` mean loss of member k on items
        ``indices[k]``; also called with a (K, n_val) index of the shared held-out items.
    :param n_items: N, the number of labelled items (transitions, preference pairs).
    :param n_members: K.
    :param val_fraction: share of items held out (same for every member) for early stopping.
    :param patience: stop after this many epochs in which no member improved.
    :param bootstrap: each member draws its own N_train items with replacement
        (Efron's bootstrap, as in Osband et al. 2016/2018); else all see every item.
    :param shared_batches: members share each minibatch and weight its items by their
        bootstrap counts; ``member_loss`` is then called as ``(indices (b,), weights (K, b))
        -> (K,)`` (weights are all 1 without bootstrap and on the held-out items) and must
        return each member's weighted mean loss.
    :return: ``{"train_loss": [...], "val_loss": [...], "best_epoch": [K ints], "epochs": n}``
        (losses are per-epoch means over members; ``val_loss`` empty without a held-out split).
    """
    if n_items < 1:
        raise ValueError("no labelled data to fit on; collect transitions (or preferences) first")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise ValueError(f"epochs, batch_size and patience must be >= 1; got {epochs}, {batch_size}, {patience}")
    device = parameters[0].device
    assert all(p.shape[0] == n_members and p.requires_grad for p in parameters), [p.shape for p in parameters]
    generator = generator if generator is not None else torch.Generator()

    order = torch.randperm(n_items, generator=generator)
    n_val = min(max(round(val_fraction * n_items), 1), n_items - 1) if val_fraction > 0 and n_items > 1 else 0
    val_items, train_items = order[:n_val].to(device), order[n_val:]
    n_train = len(train_items)
    if bootstrap:
        draws = torch.randint(n_train, (n_members, n_train), generator=generator)
    else:
        draws = torch.arange(n_train).expand(n_members, n_train)
    member_items = train_items[draws]  # (K, N_train): member k's resample
    if shared_batches:
        # member k's count of train item j in its resample: (K, N_train), summing to N_train per member
        counts = torch.zeros(n_members, n_train).scatter_add_(1, draws, torch.ones(n_members, n_train))

    def shared_loss(items: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return member_loss(items.to(device), weights.to(device))

    optimiser = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=True)
    best_loss = torch.full((n_members,), math.inf, device=device)
    best_epoch = torch.zeros(n_members, dtype=torch.long)
    best_params = [p.detach().clone() for p in parameters]
    history: dict[str, Any] = {"train_loss": [], "val_loss": []}
    epochs_without_improvement = 0
    bar = tqdm(range(epochs), desc=description, disable=not progress_bar, leave=False)
    for epoch in bar:
        if shared_batches:
            order = torch.randperm(n_train, generator=generator)
            epoch_items, epoch_weights = train_items[order], counts[:, order]
        else:
            shuffle = torch.argsort(torch.rand(n_members, n_train, generator=generator), dim=1)
            epoch_items = member_items.gather(1, shuffle).to(device)
        total, n_batches = 0.0, 0
        for start in range(0, n_train, batch_size):
            batch = slice(start, start + batch_size)
            if shared_batches:
                loss = shared_loss(epoch_items[batch], epoch_weights[:, batch])
            else:
                loss = member_loss(epoch_items[:, batch])
            assert loss.shape == (n_members,), loss.shape
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
            total += float(loss.detach().mean())
            n_batches += 1
        history["train_loss"].append(total / n_batches)
        if n_val == 0:
            continue
        with torch.no_grad():
            if shared_batches:
                val_loss = shared_loss(val_items, torch.ones(n_members, n_val))
            else:
                val_loss = member_loss(val_items.expand(n_members, n_val))
            improved = val_loss < best_loss
            best_loss = torch.where(improved, val_loss, best_loss)
            best_epoch[improved.cpu()] = epoch
            for best, current in zip(best_params, parameters):
                mask = improved.view(-1, *([1] * (current.dim() - 1)))
                best.copy_(torch.where(mask, current, best))
        history["val_loss"].append(float(val_loss.mean()))
        bar.set_postfix(train=f"{history['train_loss'][-1]:.4g}", val=f"{history['val_loss'][-1]:.4g}")
        epochs_without_improvement = 0 if bool(improved.any()) else epochs_without_improvement + 1
        if epochs_without_improvement >= patience:
            break
    bar.close()
    if n_val > 0:
        with torch.no_grad():
            for best, current in zip(best_params, parameters):
                current.copy_(best)
    history["best_epoch"] = best_epoch.tolist() if n_val > 0 else [len(history["train_loss"]) - 1] * n_members
    history["epochs"] = len(history["train_loss"])
    return history
