# Copyright (c) gap_mm contributors. All rights reserved.
"""A cell of a quality grid: one training run, declared whole.

Both the runner (:mod:`runner`) and the reporter (:mod:`report`) read
cells; neither knows any sparsity method: a method is a config.
"""
import dataclasses
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

#: Per task: the metric of the table, its label, and the other metrics kept.
TASK_METRICS = {
    'det':
    ('coco/bbox_mAP', 'bbox mAP', ('coco/bbox_mAP_50', 'coco/bbox_mAP_75')),
    'crowded':
    ('coco/bbox_mAP', 'bbox mAP', ('coco/bbox_mAP_50', 'coco/bbox_mAP_75',
                                   'coco/bbox_mAP_s')),
    'partseg':
    ('part_seg/instance_miou', 'instance mIoU', ('part_seg/class_miou', )),
    'toy': ('toy/mse', 'MSE', ()),
}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run of a grid, every field set when it is declared.

    Args:
        id (str): The cell's name: its record is
            ``<results>/<grid>/cells/<id>.json`` and its work dir
            ``<work_root>/<grid>/<id>/``. Declared, never derived from the
            labels, so a relabelled cell keeps its finished record.
        task (str): ``'det'``, ``'partseg'`` or ``'toy'`` (see
            :data:`TASK_METRICS`).
        method (str): The row label of the results table, e.g. ``'C-GaP'``.
        config (str): Config path, relative to the repository root.
        options (dict): ``--cfg-options`` for ``tools/train.py`` (and the
            data-related ones for ``tools/test.py``), as Python values.
        seed (int): ``randomness.seed``.
        sparsity (float | str | None): The column: a target sparsity, an
            N:M pattern such as ``'2:4'``, a label such as
            ``'FLOPs 40%'``, or None for dense.
        distribution (str | None): ``'uniform'``, ``'erk'`` ... or None.
        budget (float): Training length relative to the task's default,
            counted over the cell and the cell it starts from.
        study (str): Which part of the report the cell belongs to.
        variant (str): What else differs (a schedule, a grow rule), as the
            table shows it. Defaults to ''.
        report_config (str, optional): The config whose prunable set the
            sparsity is measured over (so a dense run is measured over the
            same layers as the sparse ones). Defaults to ``config``.
        procs (int): Training processes: more than 1 trains through
            ``tools/dist_train.sh CONFIG procs`` (gloo on the CPU), as a user
            launches P-GaP. Evaluation is one process either way.
            Defaults to 1.
        slim (bool): Also slim the checkpoint
            (``tools/model_converters/slim_model.py``: the all-zero channels
            cut out), evaluate the smaller model with ``tools/test.py`` and
            record its FLOPs and parameters. Defaults to False.
        report (bool): Measure the checkpoint's sparsity over the prunable
            set of ``report_config`` (``sparsity_report.py``); False for
            methods without weight masks (whose sparsity is their FLOPs).
            Defaults to True.
        report_options (dict): ``--cfg-options`` of that report, for a
            cell that trained with another prunable set than
            ``report_config``'s. Defaults to none.
        starts_from (str, optional): The id of the cell of the same grid
            whose checkpoint this one starts from (it must come earlier in
            the grid). Defaults to None: trained from scratch.
        declared (tuple[str]): The keys of ``options`` that the cell's
            declared fields set (its sparsity, budget, variant and start):
            the cells of a study differ in these and nothing else.
            Defaults to none.
    """
    id: str
    task: str
    method: str
    config: str
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    sparsity: Any = None
    distribution: Optional[str] = None
    budget: float = 1.0
    study: str = 'main'
    variant: str = ''
    report_config: Optional[str] = None
    procs: int = 1
    slim: bool = False
    report: bool = True
    report_options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    starts_from: Optional[str] = None
    declared: Tuple[str, ...] = ()

    def all_options(self) -> Dict[str, Any]:
        """``options`` and the seed, as ``tools/train.py`` gets them."""
        opts = OrderedDict(self.options)
        opts['randomness.seed'] = self.seed
        return opts

    def labels(self) -> Dict[str, Any]:
        """What a record keeps of the cell besides its id and options."""
        return OrderedDict((f.name, getattr(self, f.name))
                           for f in dataclasses.fields(self)
                           if f.name not in ('id', 'options', 'declared'))


def format_option(key: str, value: Any) -> str:
    """One ``KEY=VALUE`` for mmengine's ``DictAction``."""
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, (list, tuple)):
        inner = ','.join(format_option('', v)[1:] for v in value)
        text = f'[{inner}]' if isinstance(value, list) else f'({inner})'
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    if not text or any(c.isspace() for c in text):
        raise ValueError(f'--cfg-options value {value!r} of {key} cannot be '
                         f'passed on a command line')
    return f'{key}={text}'
