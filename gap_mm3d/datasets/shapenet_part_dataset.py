# Copyright (c) gap_mm authors. All rights reserved.
"""ShapeNet part segmentation dataset (``..._v0_normal`` layout).

The module also holds the benchmark's fixed tables (16 categories, their
synsets and the global part ids 0-49) and :func:`load_shapenet_part_txt`, the
validating reader of one shape file that :class:`LoadShapeNetPartPoints` and
``ShapeNetPartDataset(check_files=True)`` share.
"""
import json
import os.path as osp
from typing import (Callable, Dict, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np
from mmdet3d.registry import DATASETS, TRANSFORMS
from mmengine.dataset import BaseDataset

#: The 16 categories in the benchmark's order (index = ``category_id``).
SHAPENET_PART_CATEGORIES: Tuple[str, ...] = ('Airplane', 'Bag', 'Cap', 'Car',
                                             'Chair', 'Earphone', 'Guitar',
                                             'Knife', 'Lamp', 'Laptop',
                                             'Motorbike', 'Mug', 'Pistol',
                                             'Rocket', 'Skateboard', 'Table')

#: ShapeNetCore synset (WordNet offset) of each category.
SHAPENET_PART_SYNSETS: Dict[str, str] = {
    'Airplane': '02691156',
    'Bag': '02773838',
    'Cap': '02954340',
    'Car': '02958343',
    'Chair': '03001627',
    'Earphone': '03261776',
    'Guitar': '03467517',
    'Knife': '03624134',
    'Lamp': '03636649',
    'Laptop': '03642806',
    'Motorbike': '03790512',
    'Mug': '03797390',
    'Pistol': '03948459',
    'Rocket': '04099429',
    'Skateboard': '04225987',
    'Table': '04379243',
}

#: Part names of each category, in global part-id order. The ids are the
#: benchmark's contract; the names are descriptive.
_PART_NAMES: Dict[str, Tuple[str, ...]] = {
    'Airplane': ('body', 'wing', 'tail', 'engine'),
    'Bag': ('handle', 'body'),
    'Cap': ('panels', 'peak'),
    'Car': ('roof', 'hood', 'wheel', 'body'),
    'Chair': ('back', 'seat', 'leg', 'arm'),
    'Earphone': ('earphone', 'headband', 'mic'),
    'Guitar': ('head', 'body', 'neck'),
    'Knife': ('blade', 'handle'),
    'Lamp': ('base', 'lampshade', 'canopy', 'tube'),
    'Laptop': ('keyboard', 'screen'),
    'Motorbike': ('gas_tank', 'seat', 'wheel', 'handle', 'light', 'body'),
    'Mug': ('handle', 'cup'),
    'Pistol': ('barrel', 'handle', 'trigger'),
    'Rocket': ('body', 'fin', 'nose'),
    'Skateboard': ('wheel', 'deck', 'belt'),
    'Table': ('desktop', 'leg', 'support'),
}


def _build_part_tables() -> Tuple[Dict[str, Tuple[int, ...]], Tuple[str, ...]]:
    """Assign the consecutive global part ids 0-49 category by category."""
    category_parts: Dict[str, Tuple[int, ...]] = {}
    part_names: List[str] = []
    for category in SHAPENET_PART_CATEGORIES:
        names = _PART_NAMES[category]
        start = len(part_names)
        category_parts[category] = tuple(range(start, start + len(names)))
        part_names.extend(f'{category}_{name}' for name in names)
    return category_parts, tuple(part_names)


#: Global part ids of each category, e.g. ``'Airplane': (0, 1, 2, 3)``.
#: Part names (``'<Category>_<part>'``) indexed by global part id.
SHAPENET_PART_CATEGORY_PARTS, SHAPENET_PART_NAMES = _build_part_tables()
assert len(SHAPENET_PART_NAMES) == 50

#: Number of columns of a shape file: ``x y z nx ny nz part_label``.
_NUM_COLUMNS = 7


def load_shapenet_part_txt(
    path: str,
    valid_parts: Optional[Sequence[int]] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Read and validate one ``<shape_id>.txt`` file.

    Every non-blank line must hold 7 finite numbers ``x y z nx ny nz
    part_label``; the label must be an integer (``38`` or ``38.000000``) and,
    when ``valid_parts`` is given, one of those part ids. Any violation
    raises ``ValueError('<path>:<line>: ...')`` with the 1-based line number.

    Args:
        path (str): Path of the shape file.
        valid_parts (Sequence[int], optional): The global part ids allowed in
            this file (its category's parts). Defaults to None (0-49).

    Returns:
        tuple[np.ndarray, np.ndarray]: ``points`` of shape (N, 6), float32
        (xyz and normals), and ``labels`` of shape (N,), int64 (global part
        ids).
    """
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    rows: List[List[str]] = []
    line_numbers: List[int] = []
    for lineno, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != _NUM_COLUMNS:
            raise ValueError(
                f'{path}:{lineno}: expected {_NUM_COLUMNS} columns '
                f'"x y z nx ny nz part_label", but got {len(tokens)}: '
                f'{line.strip()!r}')
        rows.append(tokens)
        line_numbers.append(lineno)
    if not rows:
        raise ValueError(f'{path}:1: the shape file holds no points')
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        values = None
    if values is None:
        # Slow path, only to locate the offending line.
        for tokens, lineno in zip(rows, line_numbers):
            for token in tokens:
                try:
                    float(token)
                except ValueError:
                    raise ValueError(
                        f'{path}:{lineno}: non-numeric value {token!r} in '
                        f'{" ".join(tokens)!r}') from None
        raise ValueError(f'{path}: could not parse the file as numbers')
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f'{path}:{line_numbers[bad]}: non-finite value in '
                         f'{" ".join(rows[bad])!r}')
    raw_labels = values[:, 6]
    labels = np.rint(raw_labels)
    not_int = raw_labels != labels
    if not_int.any():
        bad = int(np.flatnonzero(not_int)[0])
        raise ValueError(f'{path}:{line_numbers[bad]}: part label '
                         f'{rows[bad][6]!r} is not an integer')
    labels = labels.astype(np.int64)
    allowed = np.arange(len(SHAPENET_PART_NAMES)) \
        if valid_parts is None else np.asarray(valid_parts, dtype=np.int64)
    invalid = ~np.isin(labels, allowed)
    if invalid.any():
        bad = int(np.flatnonzero(invalid)[0])
        raise ValueError(
            f'{path}:{line_numbers[bad]}: part label {labels[bad]} is '
            f'outside the valid part ids {allowed.tolist()} of this '
            'shape\'s category')
    return values[:, :6].astype(np.float32), labels


def _json_entry_line(text: str, entry: str) -> int:
    """Return the 1-based line of ``"entry"`` in the raw JSON ``text``."""
    pos = text.find(json.dumps(entry))
    if pos < 0:
        pos = text.find(entry)
    return 1 if pos < 0 else text.count('\n', 0, pos) + 1


@DATASETS.register_module()
class ShapeNetPartDataset(BaseDataset):
    """ShapeNet part segmentation (16 categories, 50 parts).

    Reads the ``shapenetcore_partanno_segmentation_benchmark_v0_normal``
    layout::

        data_root/
            synsetoffset2category.txt        # 'Airplane\\t02691156' per line
            02691156/<shape_id>.txt          # rows 'x y z nx ny nz part_label'
            ...
            train_test_split/shuffled_{train,val,test}_file_list.json
                                             # ['shape_data/<synset>/<id>', ..]

    Part labels are the benchmark's global part ids 0-49; each category owns
    a fixed consecutive range (Airplane 0-3, Bag 4-5, ..., Table 47-49, see
    :data:`SHAPENET_PART_CATEGORY_PARTS`).

    The split file, the category file and the existence of every listed
    shape file are checked at initialisation. The shape files themselves are
    read lazily by :class:`LoadShapeNetPartPoints` in the pipeline (or all at
    initialisation with ``check_files=True``); both validate every line and
    report errors as ``<file>:<line>: ...``.

    Each data info (the pipeline's input) holds:

    - ``pts_path`` (str): path of the shape file.
    - ``shape_id`` (str) and ``synset`` (str).
    - ``category`` (str): e.g. ``'Airplane'``.
    - ``category_id`` (int): index of the category in
      ``metainfo['categories']``, always the standard 16 (0-15), also when
      ``categories`` restricts the dataset.
    - ``part_ids`` (list[int]): the global part ids of that category.
    - ``num_pts_feats`` (int): 6 (xyz + normals).
    - ``sample_idx`` (int): added by :meth:`get_data_info`.

    ``metainfo`` holds:

    - ``classes`` (tuple[str]): the 50 part names ``'<Category>_<part>'``,
      indexed by global part id.
    - ``categories`` (tuple[str]): the 16 category names.
    - ``synsets`` (dict[str, str]): category name -> synset.
    - ``category_parts`` (dict[str, tuple[int]]): category name -> its
      global part ids.
    - ``selected_categories`` (tuple[str]): the categories this dataset
      loads.

    Args:
        data_root (str): The ``..._v0_normal`` folder.
        ann_file (str): Split file, relative to ``data_root`` unless absolute.
            Defaults to
            ``'train_test_split/shuffled_train_file_list.json'``.
        category_file (str): Category file, relative to ``data_root`` unless
            absolute. Defaults to ``'synsetoffset2category.txt'``.
        categories (Sequence[str], optional): Load only these categories
            (names from :data:`SHAPENET_PART_CATEGORIES`). Category ids stay
            the standard ones. Defaults to None (every category in the
            category file).
        check_files (bool): Parse and validate every shape file at
            initialisation instead of only when it is loaded. Defaults to
            False.
        metainfo (Mapping, optional): Extra meta information. It must not
            redefine ``classes``, ``categories``, ``synsets`` or
            ``category_parts``.
            Defaults to None.
        pipeline (list[dict | Callable]): Processing pipeline. A dict
            without ``_scope_`` is built in the ``'mmdet3d'`` scope
            (mmdet3d's ``TRANSFORMS``, then mmengine's), whatever the
            current default scope, so the dataset also works under a
            Runner or script whose ``default_scope`` is another one. A
            transform registered in another scope (a project's own child
            registry of mmdet3d) needs its ``_scope_`` in the dict.
            Defaults to an empty list.
        test_mode (bool): Whether the dataset is used for testing. Defaults
            to False.
        **kwargs: Other arguments of :class:`mmengine.dataset.BaseDataset`.

    Examples:
        >>> train_dataloader = dict(
        ...     dataset=dict(
        ...         type='ShapeNetPartDataset',
        ...         data_root='data/shapenetcore_partanno_segmentation_'
        ...         'benchmark_v0_normal',
        ...         ann_file='train_test_split/shuffled_train_file_list.json',
        ...         pipeline=[
        ...             dict(type='LoadShapeNetPartPoints'),
        ...             dict(type='PartPointSample', num_points=2048),
        ...             dict(type='NormalizePointsToUnitSphere'),
        ...             dict(type='PackPartSegInputs'),
        ...         ]))
    """

    METAINFO: dict = dict(
        classes=SHAPENET_PART_NAMES,
        categories=SHAPENET_PART_CATEGORIES,
        synsets=dict(SHAPENET_PART_SYNSETS),
        category_parts=dict(SHAPENET_PART_CATEGORY_PARTS),
    )
    _FIXED_META_KEYS = ('classes', 'categories', 'synsets', 'category_parts')

    def __init__(self,
                 data_root: str,
                 ann_file: str = 'train_test_split/'
                 'shuffled_train_file_list.json',
                 category_file: str = 'synsetoffset2category.txt',
                 categories: Optional[Sequence[str]] = None,
                 check_files: bool = False,
                 metainfo: Optional[Mapping] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: bool = False,
                 **kwargs) -> None:
        if metainfo is not None:
            for key in self._FIXED_META_KEYS:
                if key in metainfo and _as_plain(metainfo[key]) != _as_plain(
                        self.METAINFO[key]):
                    raise ValueError(
                        f'metainfo[{key!r}] is fixed by the ShapeNet part '
                        'benchmark and cannot be changed; use the '
                        '`categories` argument to load a subset of '
                        'categories')
        if categories is not None:
            if isinstance(categories, str):
                categories = [categories]
            unknown = [c for c in categories if c not in SHAPENET_PART_SYNSETS]
            if unknown:
                raise ValueError(
                    f'unknown categories {unknown}; the ShapeNet part '
                    f'categories are {list(SHAPENET_PART_CATEGORIES)}')
            categories = tuple(categories)
        self.requested_categories = categories
        if not osp.isabs(category_file):
            category_file = osp.join(data_root, category_file)
        self.category_file = category_file
        self.check_files = check_files
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            pipeline=[
                TRANSFORMS.build({
                    '_scope_': 'mmdet3d',
                    **t
                }) if isinstance(t, dict) else t for t in pipeline
            ],
            test_mode=test_mode,
            **kwargs)
        self._metainfo['selected_categories'] = self._selected_categories()

    def _selected_categories(self) -> Tuple[str, ...]:
        """Categories this dataset loads, in the standard order."""
        if self.requested_categories is not None:
            wanted = set(self.requested_categories)
        else:
            wanted = set(self.load_category_file().values())
        return tuple(c for c in SHAPENET_PART_CATEGORIES if c in wanted)

    def load_category_file(self) -> Dict[str, str]:
        """Read ``synsetoffset2category.txt``.

        Returns:
            dict[str, str]: synset -> category name.
        """
        path = self.category_file
        if not osp.isfile(path):
            raise FileNotFoundError(f'category file {path} does not exist')
        synset_to_category: Dict[str, str] = {}
        with open(path, encoding='utf-8') as f:
            for lineno, line in enumerate(f, start=1):
                tokens = line.split()
                if not tokens:
                    continue
                if len(tokens) != 2:
                    raise ValueError(
                        f'{path}:{lineno}: expected "<Category>\\t<synset>", '
                        f'but got {line.strip()!r}')
                category, synset = tokens
                if category not in SHAPENET_PART_SYNSETS:
                    raise ValueError(
                        f'{path}:{lineno}: unknown category {category!r}; '
                        'the ShapeNet part categories are '
                        f'{list(SHAPENET_PART_CATEGORIES)}')
                if synset != SHAPENET_PART_SYNSETS[category]:
                    raise ValueError(
                        f'{path}:{lineno}: category {category!r} has synset '
                        f'{SHAPENET_PART_SYNSETS[category]}, but the file '
                        f'says {synset}')
                if synset in synset_to_category:
                    raise ValueError(
                        f'{path}:{lineno}: synset {synset} listed twice')
                synset_to_category[synset] = category
        if not synset_to_category:
            raise ValueError(f'{path}:1: the category file lists no '
                             'categories')
        return synset_to_category

    def load_data_list(self) -> List[dict]:
        """Read the split file and check every entry.

        Returns:
            list[dict]: One data info per shape (see the class docstring).
        """
        synset_to_category = self.load_category_file()
        listed = set(synset_to_category.values())
        if self.requested_categories is not None:
            missing = [c for c in self.requested_categories if c not in listed]
            if missing:
                raise ValueError(f'categories {missing} are not listed in '
                                 f'{self.category_file}')
            selected = set(self.requested_categories)
        else:
            selected = listed

        path = self.ann_file
        if not osp.isfile(path):
            raise FileNotFoundError(f'split file {path} does not exist')
        with open(path, encoding='utf-8') as f:
            text = f.read()
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path}:{e.lineno}: invalid JSON: {e.msg}') \
                from None
        if not isinstance(entries, list):
            raise ValueError(f'{path}:1: expected a JSON list of '
                             '"shape_data/<synset>/<shape_id>" strings')

        data_list = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, str):
                raise ValueError(
                    f'{path}:{_json_entry_line(text, str(entry))}: entry '
                    f'#{index} is not a string: {entry!r}')
            parts = entry.strip('/').split('/')
            if len(parts) < 2:
                raise ValueError(
                    f'{path}:{_json_entry_line(text, entry)}: entry #{index} '
                    f'{entry!r} is not "shape_data/<synset>/<shape_id>"')
            synset, shape_id = parts[-2], parts[-1]
            if synset not in synset_to_category:
                raise ValueError(
                    f'{path}:{_json_entry_line(text, entry)}: entry #{index} '
                    f'{entry!r} has synset {synset!r}, which is not listed '
                    f'in {self.category_file}')
            category = synset_to_category[synset]
            if category not in selected:
                continue
            pts_path = osp.join(self.data_root, synset, f'{shape_id}.txt')
            if not osp.isfile(pts_path):
                raise FileNotFoundError(
                    f'{path}:{_json_entry_line(text, entry)}: entry #{index} '
                    f'{entry!r} points at {pts_path}, which does not exist')
            part_ids = list(SHAPENET_PART_CATEGORY_PARTS[category])
            if self.check_files:
                load_shapenet_part_txt(pts_path, part_ids)
            data_list.append(
                dict(
                    pts_path=pts_path,
                    shape_id=shape_id,
                    synset=synset,
                    category=category,
                    category_id=SHAPENET_PART_CATEGORIES.index(category),
                    part_ids=part_ids,
                    num_pts_feats=6))
        return data_list

    def get_cat_ids(self, idx: int) -> List[int]:
        """Get the category id of the idx-th shape.

        Args:
            idx (int): Index of the shape.

        Returns:
            list[int]: ``[category_id]`` (an index into
            ``metainfo['categories']``).
        """
        return [self.get_data_info(idx)['category_id']]


def _as_plain(value):
    """Turn tuples/lists/dicts into comparable plain structures."""
    if isinstance(value, Mapping):
        return {k: _as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_plain(v) for v in value]
    return value


__all__ = [
    'ShapeNetPartDataset', 'load_shapenet_part_txt',
    'SHAPENET_PART_CATEGORIES', 'SHAPENET_PART_SYNSETS',
    'SHAPENET_PART_CATEGORY_PARTS', 'SHAPENET_PART_NAMES'
]
