# Copyright (c) gap_mm contributors. All rights reserved.
"""FLOPs of a model, and what its all-zero filters save, with
:mod:`mmengine.analysis`.

Unstructured sparsity saves no FLOPs on dense hardware; filter-wise pruning
(GReg ``mode='filter'``) leaves whole output filters at zero, which a
slimmed model does not compute. :func:`zero_filter_flops` counts that
saving where it is certain: every conv or linear layer computes only its
non-zero output filters (``flops * kept / out`` of the layer's own FLOPs).
The layers that read those channels save too once the channels are
removed, but after a norm layer a removed channel is a constant, not zero,
so that saving needs the constant folded into the next layer and is not
counted here: the figure is a lower bound of what slimming saves.

mmengine counts a multiply-add as one FLOP (as mmdet's ``get_flops.py``
reports).
"""
from typing import Dict, Mapping, Sequence

import torch
from torch import nn

from .sparsity_report import ReportError


class _TensorForward(nn.Module):
    """``model._forward(inputs)``: the network alone, no pre- or
    post-processing (mmengine's ``BaseModel`` 'tensor' mode)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        return self.model._forward(inputs)


def module_flops(model: nn.Module,
                 input_shape: Sequence[int]) -> Dict[str, int]:
    """FLOPs of every module of ``model`` for one input of ``input_shape``
    (``(C, H, W)``), by module name (``''``: the whole model).

    Raises:
        ReportError: If the model's ``_forward`` does not run on one image
            tensor (e.g. a two-stage detector, whose RPN needs data
            samples, or a point-cloud model).
    """
    from mmengine.analysis import FlopAnalyzer
    inputs = torch.zeros(1, *[int(s) for s in input_shape])
    was_training = model.training
    model.eval()
    try:
        analyzer = FlopAnalyzer(_TensorForward(model), (inputs, ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        by_module = analyzer.by_module()
    except Exception as err:  # noqa: B902 (a trace fails in many ways)
        raise ReportError(
            f'cannot count the FLOPs of {type(model).__name__} on an input '
            f'of shape {list(inputs.shape)}: its _forward must run on one '
            f'image tensor (single-stage detectors and classifiers do); '
            f'{type(err).__name__}: {err}') from err
    finally:
        model.train(was_training)
    out = {}
    for name, flops in by_module.items():
        if name == 'model' or name.startswith('model.'):
            out[name[len('model.'):] if name != 'model' else ''] = int(flops)
    return out


def zero_filter_flops(flops: Mapping[str, int],
                      state_dict: Mapping[str, torch.Tensor],
                      layers: Sequence[str]) -> dict:
    """The FLOPs a model saves by not computing its all-zero output filters.

    Args:
        flops (Mapping[str, int]): :func:`module_flops` of the model.
        state_dict (Mapping[str, Tensor]): Its weights.
        layers (Sequence[str]): The weights to look at (``'a.b.weight'``,
            conv or linear, output filters along dim 0).

    Returns:
        dict: ``total`` (the dense model's FLOPs), ``without_zero_filters``
        (after removing each layer's zero filters from its own FLOPs),
        ``saved_fraction``, ``filters`` and ``zero_filters`` (over
        ``layers``), and per-layer ``layers`` rows of those with zero
        filters.
    """
    total = flops.get('', 0)
    saved = 0.0
    rows = []
    n_filters = n_zero = 0
    for name in layers:
        weight = state_dict[name]
        module = name.rsplit('.', 1)[0]
        out = weight.shape[0]
        zero = int((weight.reshape(out, -1) == 0).all(dim=1).sum())
        n_filters += out
        n_zero += zero
        if zero and module in flops:
            layer_saved = flops[module] * zero / out
            saved += layer_saved
            rows.append(
                dict(
                    name=name,
                    filters=out,
                    zero_filters=zero,
                    flops=flops[module],
                    saved=int(round(layer_saved))))
    kept = total - int(round(saved))
    return dict(
        total=total,
        without_zero_filters=kept,
        saved_fraction=saved / total if total else 0.0,
        filters=n_filters,
        zero_filters=n_zero,
        layers=rows)
