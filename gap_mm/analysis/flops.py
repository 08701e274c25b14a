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
import argparse
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from gap_mm.errors import GaPConfigError
from .sparsity_report import ReportError


def check_input_shape(shape, what: str = 'the input shape') -> Tuple[int, ...]:
    """``shape`` as a tuple if it is ``(C, H, W)`` (an image) or ``(N, C)``
    (a point cloud of ``N`` points) of positive ints, the inputs
    :func:`module_flops` can trace.

    Raises:
        GaPConfigError: Naming ``what`` and the value otherwise.
    """
    try:
        dims = tuple(shape)
    except TypeError:
        dims = ()
    if len(dims) not in (2, 3) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0
            for d in dims):
        raise GaPConfigError(
            f'{what} must be C H W (an image) or N C (a point cloud) of '
            f'positive ints, got {shape!r}')
    return dims


class InputShapeAction(argparse.Action):
    """``argparse`` action of a tool's input-shape option (``type=int,
    nargs='+'``): checks the dims with :func:`check_input_shape` as they
    are parsed and ends the tool with the usual usage error naming the
    option and the value."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            check_input_shape(values, option_string or self.dest)
        except GaPConfigError as err:
            parser.error(str(err))
        setattr(namespace, self.dest, list(values))


class _TensorForward(nn.Module):
    """``model._forward(inputs)``: the network alone, no pre- or
    post-processing (mmengine's ``BaseModel`` 'tensor' mode).

    A two-stage detector's ``_forward`` runs the RPN's post-processing
    (NMS) and needs data samples, which a trace cannot take; for it the
    network is the backbone, neck and RPN head on the image, then the RoI
    head on ``num_proposals`` fixed boxes (the RPN's ``max_per_img`` at
    test time, 1000 in Faster R-CNN), which is what inference computes
    when the RPN keeps that many.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        model = self.model
        if inputs.dim() == 3:  # (1, N, C): a point cloud
            return _points_forward(model, inputs)
        if _is_two_stage(model):
            return _two_stage_forward(model, inputs)
        return model._forward(inputs)


def _points_forward(model: nn.Module, points: torch.Tensor):
    """A 3D segmentor on a batch of point clouds; each data sample carries
    the category PointNet++ part segmentation reads (0; the FLOPs do not
    depend on it)."""
    from mmdet3d.structures import Det3DDataSample
    samples = [
        Det3DDataSample(metainfo=dict(category_id=0))
        for _ in range(points.shape[0])
    ]
    return model._forward(dict(points=points), samples)


def _is_two_stage(model: nn.Module) -> bool:
    return getattr(model, 'rpn_head', None) is not None and getattr(
        model, 'roi_head', None) is not None


def num_test_proposals(model: nn.Module, default: int = 1000) -> int:
    """The most proposals a two-stage detector's RPN keeps per image at
    test time (``test_cfg.rpn.max_per_img``)."""
    cfg = getattr(model, 'test_cfg', None) or {}
    rpn = cfg.get('rpn', None) if hasattr(cfg, 'get') else None
    value = rpn.get('max_per_img', None) if rpn is not None else None
    return int(value) if value else default


def _two_stage_forward(model: nn.Module, inputs: torch.Tensor) -> tuple:
    from mmengine.structures import InstanceData
    feats = model.extract_feat(inputs)
    rpn_outs = model.rpn_head(feats)
    num = num_test_proposals(model)
    h, w = inputs.shape[-2:]
    # boxes of a quarter of the image's size, spread over it (the RoI head's
    # FLOPs depend on the number of boxes only)
    t = torch.linspace(0, 0.75, num, dtype=inputs.dtype)
    boxes = torch.stack([t * w, t.flip(0) * h, t * w + w / 4,
                         t.flip(0) * h + h / 4], dim=1)
    boxes = boxes.to(inputs.device)
    roi_outs = model.roi_head.forward(
        feats, [InstanceData(bboxes=boxes) for _ in range(inputs.shape[0])])
    return tuple(rpn_outs) + tuple(roi_outs)


def network_forward(model: nn.Module, inputs: torch.Tensor):
    """The network's raw outputs on an image batch, as FLOPs are counted
    (:class:`_TensorForward`): to compare a model with its slimmed copy."""
    return _TensorForward(model)(inputs)


def module_flops(model: nn.Module,
                 input_shape: Sequence[int]) -> Dict[str, int]:
    """FLOPs of every module of ``model`` for one input of ``input_shape``
    (``(C, H, W)`` for an image, ``(N, C)`` for a point cloud of ``N``
    points), by module name (``''``: the whole model).

    Single-stage detectors and classifiers run their ``_forward``;
    two-stage detectors their backbone, neck and RPN head, then the RoI
    head on as many boxes as the RPN keeps at test time (see
    :class:`_TensorForward`).

    Raises:
        GaPConfigError: If ``input_shape`` is neither (see
            :func:`check_input_shape`).
        ReportError: If the trace fails (a model whose ``_forward`` needs
            more than the input tensor, or that a jit trace cannot run).
    """
    from mmengine.analysis import FlopAnalyzer
    inputs = torch.zeros(1, *check_input_shape(input_shape))
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
            f'image tensor (single-stage detectors and classifiers; '
            f'two-stage detectors are traced through their RPN and RoI '
            f'heads) or on one (N, C) point cloud (3D segmentors); '
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
                      layers: Sequence[str],
                      out_dims: Optional[Mapping[str, int]] = None) -> dict:
    """The FLOPs a model saves by not computing its all-zero output filters.

    A layer's FLOPs are those of the module that owns the weight; an
    attention's q, k and v projections (``in_proj_weight``), whose module
    computes the whole attention, count filters but no FLOPs (the figures
    leave their saving out).

    Args:
        flops (Mapping[str, int]): :func:`module_flops` of the model.
        state_dict (Mapping[str, Tensor]): Its weights.
        layers (Sequence[str]): The weights to look at (``'a.b.weight'``,
            conv or linear, output filters along dim 0).
        out_dims (Mapping[str, int], optional): The dim of each layer's
            output filters where it is not 0 (1 for a transposed conv, as
            :func:`~gap_mm.analysis.sparsity_report.compute_report`'s rows
            give it).

    Returns:
        dict: ``total`` (the dense model's FLOPs), ``without_zero_filters``
        (after removing each layer's zero filters from its own FLOPs),
        ``saved_fraction``, ``filters`` and ``zero_filters`` (over
        ``layers``), per-layer ``layers`` rows of those with zero filters;
        and for unstructured sparsity ``nonzero`` (the model's FLOPs when
        each of ``layers`` computes only its non-zero weights: its FLOPs
        times its density, what sparse kernels could reach) and
        ``by_layer`` (``name -> [FLOPs, non-zero FLOPs]``).
    """
    total = flops.get('', 0)
    saved = 0.0
    sparse_saved = 0.0
    by_layer = {}
    rows = []
    n_filters = n_zero = 0
    for name in layers:
        weight = state_dict[name]
        module, _, attr = name.rpartition('.')
        if attr != 'weight':  # the module computes more than this weight
            module = None
        out_dim = (out_dims or {}).get(name, 0)
        if out_dim:
            weight = weight.movedim(out_dim, 0)
        out = weight.shape[0]
        if module in flops and weight.numel():
            density = float((weight != 0).sum()) / weight.numel()
            by_layer[name] = [
                flops[module], int(round(flops[module] * density))
            ]
            sparse_saved += flops[module] * (1 - density)
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
        layers=rows,
        nonzero=total - int(round(sparse_saved)),
        by_layer=by_layer)
