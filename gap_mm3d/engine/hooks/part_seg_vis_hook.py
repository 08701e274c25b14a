# Copyright (c) gap_mm contributors. All rights reserved.
import os.path as osp
from typing import Optional, Sequence

import numpy as np
from mmdet3d.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.utils import mkdir_or_exist

from ...datasets.shapenet_part_dataset import (SHAPENET_PART_CATEGORIES,
                                               SHAPENET_PART_CATEGORY_PARTS)
from ...evaluation.part_seg_metric import _get, _to_numpy, shape_part_iou


@HOOKS.register_module()
class PartSegVisualizationHook(Hook):
    """Draw the parts of test shapes: ground truth beside the prediction.

    mmdet3d's ``Det3DVisualizationHook`` needs an image or a LiDAR file per
    sample; a ShapeNet part shape has neither, so this hook draws the
    sampled points the model saw, coloured by part, with the shape's IoU in
    the title, into one PNG per shape. ``tools/test.py --show-dir DIR``
    switches it on (``draw=True``, ``test_out_dir=DIR``), as it does the
    detection hooks.

    Args:
        draw (bool): Whether to draw at all. Defaults to False.
        interval (int): Draw every ``interval``-th test shape. Defaults to 1.
        show (bool): Also show each figure in a window. Defaults to False.
        wait_time (float): Seconds each shown figure stays. Defaults to 0.
        test_out_dir (str, optional): Folder, under the run's
            ``work_dir/<timestamp>/``, for ``<synset>_<shape_id>.png``.
            Defaults to None (nothing saved).
        point_size (float): Marker size. Defaults to 4.

    Examples:
        >>> default_hooks = dict(
        >>>     visualization=dict(type='PartSegVisualizationHook'))
    """

    priority = 'NORMAL'

    def __init__(self,
                 draw: bool = False,
                 interval: int = 1,
                 show: bool = False,
                 wait_time: float = 0.,
                 test_out_dir: Optional[str] = None,
                 point_size: float = 4.) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(
                f'interval must be a positive int, but got {interval!r}')
        self.draw = draw
        self.interval = interval
        self.show = show
        self.wait_time = wait_time
        self.test_out_dir = test_out_dir
        self.point_size = point_size
        self._out_dir: Optional[str] = None
        self._index = 0

    def before_test(self, runner) -> None:
        self._index = 0
        self._out_dir = None
        if self.draw and self.test_out_dir is not None:
            self._out_dir = osp.join(runner.work_dir, runner.timestamp,
                                     self.test_out_dir)
            mkdir_or_exist(self._out_dir)

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence) -> None:
        if not self.draw:
            return
        points = data_batch['inputs']['points']
        for cloud, sample in zip(points, outputs):
            self._index += 1
            if (self._index - 1) % self.interval:
                continue
            self._draw_one(cloud[:, :3].detach().cpu().numpy(), sample)

    def _draw_one(self, xyz: np.ndarray, sample) -> None:
        category = SHAPENET_PART_CATEGORIES[int(_get(sample, 'category_id'))]
        parts = SHAPENET_PART_CATEGORY_PARTS[category]
        pred = _to_numpy(_get(_get(sample, 'pred_pts_seg'),
                              'pts_semantic_mask'))
        gt_seg = _get(sample, 'gt_pts_seg')
        gt_mask = None if gt_seg is None else _get(gt_seg,
                                                   'pts_semantic_mask')
        gt = None if gt_mask is None else _to_numpy(gt_mask)
        shape_id = _get(sample, 'shape_id') or f'shape{self._index:05d}'
        synset = _get(sample, 'synset') or category
        title = f'{category} {shape_id}'
        panels = [('prediction', pred)]
        if gt is not None:
            title += f': shape IoU {shape_part_iou(pred, gt, parts):.3f}'
            panels.insert(0, ('ground truth', gt))

        if self.show:
            import matplotlib.pyplot as plt
            figure = plt.figure(figsize=(4.5 * len(panels), 4.8))
        else:  # no pyplot: no GUI backend, no global figure state
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            figure = Figure(figsize=(4.5 * len(panels), 4.8))
            FigureCanvasAgg(figure)
        # Part k of the category gets colour k; a prediction outside the
        # category (impossible for PointNet2PartSeg) is grey.
        palette = np.array([(0.6, 0.6, 0.6)] + _tab10()[:len(parts)])
        for col, (name, labels) in enumerate(panels, start=1):
            axis = figure.add_subplot(1, len(panels), col, projection='3d')
            index = np.searchsorted(parts, labels) + 1
            index[~np.isin(labels, parts)] = 0
            axis.scatter(
                xyz[:, 0], xyz[:, 2], xyz[:, 1], c=palette[index],
                s=self.point_size, depthshade=False)
            axis.set_title(name)
            axis.set_axis_off()
            axis.set_box_aspect((1, 1, 1))
        figure.suptitle(title)
        figure.tight_layout()
        if self._out_dir is not None:
            figure.savefig(
                osp.join(self._out_dir, f'{synset}_{shape_id}.png'), dpi=80)
        if self.show:
            import matplotlib.pyplot as plt
            plt.show(block=False)
            plt.pause(self.wait_time)
            plt.close(figure)


def _tab10():
    from matplotlib import colormaps
    return [colormaps['tab10'](i)[:3] for i in range(10)]
