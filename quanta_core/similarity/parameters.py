"""The QDG parameter set: which parameters the per-token gradients are taken with respect to.

Every parameter except the input embedding (``model.get_input_embeddings()``), the output
unembedding (``model.get_output_embeddings()``) and the layer norms inside the decoder layers; the
final layer norm is *included*, as in the original script (its name filter ``'layernorm' not in
name`` let ``final_layer_norm`` through), unless ``exclude_final_layer_norm=True`` (what the
paper's text says). Modules are found by identity and type, not by name, so transformers ≥ 5's
``lm_head`` is excluded like ``embed_out``.
"""

from __future__ import annotations

from torch import nn


def is_norm(module: nn.Module) -> bool:
    """A LayerNorm / RMSNorm module (by type or class name)."""
    name = type(module).__name__
    return isinstance(module, nn.LayerNorm) or name.endswith(("LayerNorm", "RMSNorm"))


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM (``.layers`` / ``.h`` / ``.blocks`` of the base model)."""
    base = getattr(model, "base_model", model)
    for attr in ("layers", "h", "blocks"):
        layers = getattr(base, attr, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (no .layers ModuleList)")


def final_layer_norm(model: nn.Module) -> nn.Module | None:
    """The norm after the last decoder layer: the base model's norm module outside the layers."""
    base = getattr(model, "base_model", model)
    inside = {id(m) for m in decoder_layers(model).modules()}
    norms = [m for m in base.modules() if is_norm(m) and id(m) not in inside]
    if len(norms) > 1:
        raise ValueError(f"{type(model).__name__} has {len(norms)} norm modules outside its layers")
    return norms[0] if norms else None


def similarity_parameters(
    model: nn.Module, *, exclude_final_layer_norm: bool = False
) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the QDG parameter set, in ``named_parameters()`` order.

    Excluded, by module identity: the input embedding, the output embedding (unembedding; also
    when tied), every norm module inside the decoder layers, and the final norm when
    ``exclude_final_layer_norm``.
    """
    excluded: set[int] = set()
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            excluded.update(id(p) for p in module.parameters())
    for module in decoder_layers(model).modules():
        if is_norm(module):
            excluded.update(id(p) for p in module.parameters())
    if exclude_final_layer_norm:
        final = final_layer_norm(model)
        if final is not None:
            excluded.update(id(p) for p in final.parameters())
    return [(n, p) for n, p in model.named_parameters() if id(p) not in excluded]


def last_layer_positionwise_modules(model: nn.Module) -> list[nn.Module]:
    """Modules of the last decoder layer that act on each position alone and whose outputs join
    the residual stream by a sum: GPT-NeoX's MLP and attention output projection (``[]`` for
    other architectures). Only the target position of the last layer reaches the loss, so these
    may run on the target rows alone (about an eighth of pythia-70m's matrix FLOPs saved)."""
    layer = decoder_layers(model)[-1]
    if type(layer).__name__ != "GPTNeoXLayer":
        return []
    return [layer.mlp, layer.attention.dense]
