"""A plain MLP builder, and how heads learn the output width of the MLP they are handed."""

from typing import Sequence, Type

from torch import nn


def mlp(
    in_dim: int,
    hidden_dims: Sequence[int],
    out_dim: int,
    dropout: float = 0.0,
    activation: Type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """Linear -> activation -> Dropout for each hidden width, then a final Linear (no activation).

    Dropout layers are kept even at p=0.0 so the state_dict keys do not depend on the dropout rate.

    Args:
        in_dim: input width.
        hidden_dims: hidden widths, possibly empty (then the MLP is a single Linear).
        out_dim: output width.
        dropout: dropout probability after each hidden activation, in [0, 1).
        activation: activation CLASS (instantiated once per hidden layer), e.g. nn.ReLU, nn.GELU.

    Raises:
        ValueError: if a width is not positive or dropout is outside [0, 1).
    """
    widths = [in_dim, *hidden_dims, out_dim]
    if any(int(w) != w or w <= 0 for w in widths):
        raise ValueError(
            f"MLP widths must be positive integers, got in={in_dim} hidden={list(hidden_dims)} out={out_dim}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(a, b), activation(), nn.Dropout(dropout)]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def module_out_dim(module: nn.Module, in_dim: int) -> int:
    """The output width of a module handed to a head, read from its structure (no forward pass).

    Understood: anything with an int `out_dim` attribute, nn.Identity (in_dim), nn.Linear, and an
    nn.Sequential whose last layer that is not an activation, dropout or norm is one of those.

    Args:
        module: the MLP (or other module) applied to the pooled (B, in_dim) vector.
        in_dim: its input width.

    Raises:
        ValueError: if the width cannot be read; give the module an int `out_dim` attribute.
    """
    if isinstance(getattr(module, "out_dim", None), int):
        return module.out_dim
    if isinstance(module, nn.Identity):
        return in_dim
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Sequential):
        for layer in reversed(module):
            if not _keeps_width(layer):
                return module_out_dim(layer, in_dim)
        return in_dim
    raise ValueError(f"cannot read the output width of {type(module).__name__}; give it an int `out_dim` attribute")


def _keeps_width(layer: nn.Module) -> bool:
    """True for layers that never change the width: activations, dropout, norms, identity."""
    is_activation = type(layer).__module__ == nn.ReLU.__module__ and not isinstance(layer, nn.MultiheadAttention)
    return is_activation or isinstance(layer, (nn.Identity, nn.Dropout, nn.LayerNorm, nn.BatchNorm1d))
