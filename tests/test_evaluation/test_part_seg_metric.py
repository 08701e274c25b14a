# Copyright (c) gap_mm authors. All rights reserved.
import numpy as np
import pytest
import torch
from mmdet3d.registry import METRICS
from mmdet3d.structures import Det3DDataSample, PointData
from mmengine.evaluator import Evaluator

from gap_mm3d.datasets import ShapeNetPartDataset
from gap_mm3d.evaluation import PartSegMetric, shape_part_iou

MUG, TABLE = 11, 15  # category ids; Mug parts 36-37, Table parts 47-49

# (category_id, gt, pred) and each shape's IoU worked out by hand
SHAPES = [
    # Mug: handle I=1 U=2 -> 1/2; cup I=3 U=4 -> 3/4; mean 5/8
    (MUG, [36, 36, 37, 37, 37], [36, 37, 37, 37, 37], 5 / 8),
    # Mug without a handle, predicted without one: the absent handle counts
    # as IoU 1 -> mean 1
    (MUG, [37, 37, 37, 37], [37, 37, 37, 37], 1.0),
    # Table: desktop I=1 U=2 -> 1/2; leg I=1 U=3 -> 1/3; support absent in
    # both -> 1. The point predicted as 36 (a Mug part) is wrong and
    # enters no Table part's union. Mean (1/2 + 1/3 + 1) / 3 = 11/18
    (TABLE, [47, 47, 48, 48], [47, 48, 48, 36], 11 / 18),
]
INSTANCE = (5 / 8 + 1 + 11 / 18) / 3
CLASS = ((5 / 8 + 1) / 2 + 11 / 18) / 2


def _as_dict(category_id, gt, pred):
    """A data sample as mmengine's Evaluator hands it to the metric."""
    return dict(
        category_id=category_id,
        gt_pts_seg=dict(pts_semantic_mask=torch.tensor(gt)),
        pred_pts_seg=dict(pts_semantic_mask=torch.tensor(pred)))


def _as_data_sample(category_id, gt, pred):
    sample = Det3DDataSample(metainfo=dict(category_id=category_id))
    sample.gt_pts_seg = PointData(pts_semantic_mask=torch.tensor(gt))
    sample.pred_pts_seg = PointData(pts_semantic_mask=torch.tensor(pred))
    return sample


def test_shape_part_iou():
    for _, gt, pred, expected in SHAPES:
        parts = (36, 37) if gt[0] in (36, 37) else (47, 48, 49)
        assert shape_part_iou(np.array(pred), np.array(gt),
                              parts) == pytest.approx(expected)


def test_metric_hand_computed():
    metric = PartSegMetric()
    metric.dataset_meta = ShapeNetPartDataset.METAINFO
    # two batches, mixed dicts and data samples
    metric.process(None, [_as_dict(*s[:3]) for s in SHAPES[:2]])
    metric.process(None, [_as_data_sample(*SHAPES[2][:3])])
    results = metric.evaluate(size=3)
    assert results['part_seg/instance_miou'] == pytest.approx(INSTANCE)
    assert results['part_seg/class_miou'] == pytest.approx(CLASS)
    assert results['part_seg/Mug_miou'] == pytest.approx((5 / 8 + 1) / 2)
    assert results['part_seg/Table_miou'] == pytest.approx(11 / 18)
    # absent categories are skipped
    assert 'part_seg/Airplane_miou' not in results


def test_metric_through_evaluator():
    metric = METRICS.build(dict(type='PartSegMetric', prefix='part'))
    evaluator = Evaluator(metric)
    evaluator.dataset_meta = ShapeNetPartDataset.METAINFO
    evaluator.process(
        data_samples=[_as_data_sample(*s[:3]) for s in SHAPES],
        data_batch=None)
    results = evaluator.evaluate(3)
    assert results['part/instance_miou'] == pytest.approx(INSTANCE)
    assert results['part/class_miou'] == pytest.approx(CLASS)


def test_metric_without_dataset_meta():
    # falls back to the standard tables
    metric = PartSegMetric()
    metric.process(None, [_as_dict(*s[:3]) for s in SHAPES])
    assert metric.evaluate(3)['part_seg/class_miou'] == pytest.approx(CLASS)


def test_metric_errors():
    metric = PartSegMetric()
    with pytest.raises(ValueError, match='2 predicted labels but 3'):
        metric.process(None, [_as_dict(MUG, [36, 37, 37], [36, 37])])
    sample = _as_dict(MUG, [36], [36])
    del sample['category_id']
    with pytest.raises(KeyError, match='category_id'):
        metric.process(None, [sample])
    sample = _as_dict(MUG, [36], [36])
    del sample['pred_pts_seg']
    with pytest.raises(KeyError, match='pred_pts_seg'):
        metric.process(None, [sample])
    with pytest.raises(ValueError, match='category_id 16'):
        metric.process(None, [_as_dict(16, [36], [36])])
