# Copyright (c) gap_mm authors. All rights reserved.
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmengine.structures import BaseDataElement

from ..datasets.shapenet_part_dataset import (SHAPENET_PART_CATEGORIES,
                                              SHAPENET_PART_CATEGORY_PARTS)


def _to_numpy(value: Any) -> np.ndarray:
    """Convert a tensor / array / sequence to a flat int64 array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value).reshape(-1).astype(np.int64)


def _get(sample: Any, key: str) -> Any:
    """Read ``key`` from a dict or a data element, None when absent."""
    if isinstance(sample, Mapping):
        return sample.get(key)
    return getattr(sample, key, None)


def shape_part_iou(pred: np.ndarray, gt: np.ndarray,
                   part_ids: Sequence[int]) -> float:
    """Mean IoU of one shape over the parts of its category.

    For each part ``p`` in ``part_ids``, ``IoU_p = |pred=p and gt=p| /
    |pred=p or gt=p|``, and ``IoU_p = 1`` when ``p`` is absent from both.
    Predictions of parts outside ``part_ids`` count as wrong for the point's
    true part and add to no other part's union.

    Args:
        pred (np.ndarray): (N,) predicted global part ids.
        gt (np.ndarray): (N,) ground-truth global part ids.
        part_ids (Sequence[int]): Global part ids of the shape's category.

    Returns:
        float: The shape's mean IoU.
    """
    ious = []
    for part in part_ids:
        pred_p = pred == part
        gt_p = gt == part
        union = np.count_nonzero(pred_p | gt_p)
        if union == 0:
            ious.append(1.0)
        else:
            ious.append(np.count_nonzero(pred_p & gt_p) / union)
    return float(np.mean(ious))


@METRICS.register_module()
class PartSegMetric(BaseMetric):
    """Instance- and class-average mIoU for ShapeNet part segmentation.

    Each shape's IoU is the mean over the parts of its own category only
    (see :func:`shape_part_iou`); a part absent from both prediction and
    ground truth counts as IoU 1.

    Reported under the prefix (``'part_seg/...'`` by default):

    - ``instance_miou``: mean of the shape IoUs over all shapes.
    - ``class_miou``: mean over the categories present in the evaluated
      shapes of each category's mean shape IoU.
    - ``<Category>_miou``: each present category's mean shape IoU.

    Values are fractions in [0, 1]. A per-category table (category, number
    of shapes, mIoU) is printed through ``print_log``.

    Contract of :meth:`process`: each element of ``data_samples`` (a dict,
    as mmengine's Evaluator passes them, or a ``Det3DDataSample``) holds

    - ``pred_pts_seg['pts_semantic_mask']``: (N,) predicted global part ids
      (tensor or array), written by the model;
    - ``gt_pts_seg['pts_semantic_mask']``: (N,) ground-truth global part ids,
      packed by :class:`PackPartSegInputs`;
    - ``category_id``: int, index into the dataset's
      ``metainfo['categories']`` (metainfo of the data sample).

    The category names and part ids come from ``dataset_meta``
    (``categories`` and ``category_parts``) when the Evaluator sets it, and
    otherwise from the standard ShapeNet part tables.

    Args:
        collect_device (str): Device used to collect results across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Prefix of the metric names, which are
            reported as ``'<prefix>/instance_miou'`` etc. Defaults to None
            (``default_prefix``, ``'part_seg'``).

    Examples:
        >>> val_evaluator = dict(type='PartSegMetric')
        >>> default_hooks = dict(
        ...     checkpoint=dict(save_best='part_seg/instance_miou'))
    """

    default_prefix: Optional[str] = 'part_seg'

    def __init__(self,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)

    def _tables(self):
        """Category names and their part ids."""
        meta = self.dataset_meta or {}
        categories = tuple(meta.get('categories', SHAPENET_PART_CATEGORIES))
        category_parts = meta.get('category_parts',
                                  SHAPENET_PART_CATEGORY_PARTS)
        return categories, category_parts

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Compute the IoU of every shape in a batch.

        Args:
            data_batch (Any): The batch from the dataloader (unused).
            data_samples (Sequence[dict | Det3DDataSample]): Model outputs,
                see the class docstring.
        """
        categories, category_parts = self._tables()
        for sample in data_samples:
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            pred_seg = _get(sample, 'pred_pts_seg')
            gt_seg = _get(sample, 'gt_pts_seg')
            category_id = _get(sample, 'category_id')
            name = _get(sample, 'pts_path') or _get(sample, 'sample_idx')
            if pred_seg is None or _get(pred_seg, 'pts_semantic_mask') is None:
                raise KeyError(f'sample {name}: PartSegMetric needs '
                               'pred_pts_seg.pts_semantic_mask')
            if gt_seg is None or _get(gt_seg, 'pts_semantic_mask') is None:
                raise KeyError(f'sample {name}: PartSegMetric needs '
                               'gt_pts_seg.pts_semantic_mask')
            if category_id is None:
                raise KeyError(f'sample {name}: PartSegMetric needs '
                               'category_id')
            category_id = int(category_id)
            if not 0 <= category_id < len(categories):
                raise ValueError(f'sample {name}: category_id {category_id} '
                                 f'is not in 0..{len(categories) - 1}')
            pred = _to_numpy(_get(pred_seg, 'pts_semantic_mask'))
            gt = _to_numpy(_get(gt_seg, 'pts_semantic_mask'))
            if pred.shape != gt.shape:
                raise ValueError(
                    f'sample {name}: {pred.shape[0]} predicted labels but '
                    f'{gt.shape[0]} ground-truth labels')
            part_ids = category_parts[categories[category_id]]
            self.results.append(
                dict(
                    category_id=category_id,
                    iou=shape_part_iou(pred, gt, part_ids)))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Aggregate the shape IoUs.

        Args:
            results (list[dict]): ``dict(category_id, iou)`` per shape, from
                all ranks.

        Returns:
            dict[str, float]: ``instance_miou``, ``class_miou`` and
            ``<Category>_miou`` for every category present.
        """
        logger = MMLogger.get_current_instance()
        categories, _ = self._tables()
        if not results:
            raise ValueError('PartSegMetric got no results')
        per_category: Dict[int, List[float]] = OrderedDict()
        for result in sorted(results, key=lambda r: r['category_id']):
            per_category.setdefault(result['category_id'],
                                    []).append(result['iou'])
        instance_miou = float(np.mean([r['iou'] for r in results]))
        category_mious = {
            cid: float(np.mean(ious))
            for cid, ious in per_category.items()
        }
        class_miou = float(np.mean(list(category_mious.values())))

        metrics: Dict[str, float] = OrderedDict()
        metrics['instance_miou'] = instance_miou
        metrics['class_miou'] = class_miou
        for cid, miou in category_mious.items():
            metrics[f'{categories[cid]}_miou'] = miou

        rows = [('category', 'shapes', 'mIoU')]
        rows += [(categories[cid], str(len(per_category[cid])),
                  f'{category_mious[cid] * 100:.2f}') for cid in per_category]
        rows += [('class avg', str(len(results)), f'{class_miou * 100:.2f}'),
                 ('instance avg', str(len(results)),
                  f'{instance_miou * 100:.2f}')]
        print_log('\n' + _format_table(rows), logger=logger)
        return metrics


def _format_table(rows: List[Sequence[str]]) -> str:
    """Render rows as a plain-text table with a header rule."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def fmt(row):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return '| ' + ' | '.join(cells) + ' |'

    rule = '+' + '+'.join('-' * (w + 2) for w in widths) + '+'
    lines = [rule, fmt(rows[0]), rule]
    lines += [fmt(row) for row in rows[1:-2]]
    lines += [rule] + [fmt(row) for row in rows[-2:]] + [rule]
    return '\n'.join(lines)


__all__ = ['PartSegMetric', 'shape_part_iou']
