# Copyright (c) gap_mm contributors. All rights reserved.
"""The annotation files a config names are checked before a run: an empty,
truncated, non-JSON or incomplete COCO file stops it with one line naming
the file and what is wrong."""
import json

import pytest
from mmengine.config import Config

from gap_mm.errors import GaPConfigError
from gap_mm.prerun_checks import check_coco_annotations, check_data_paths

GOOD = {'images': [], 'annotations': [], 'categories': []}


def _cfg(root, ann='ann.json', type_='CocoDataset'):
    return Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type=type_, data_root=str(root) + '/', ann_file=ann))))


@pytest.mark.parametrize('text, message', [
    ('', r"annotation file '.*ann\.json' is empty"),
    ('{"images": [], "annotations": [{"id": 1},',
     r'is truncated or not a COCO JSON object: it does not end with "}" '
     r'\(41 bytes\)'),
    ('{"images": [], "annotations": [{"id": 1}',
     r"is not valid JSON: Expecting ',' delimiter: line 1 column 41"),
    ('{"images": [], "annotations": [}',
     r"is not valid JSON: Expecting value: line 1 column 32"),
    ('{}', r"has no list of 'images' / 'annotations' / 'categories': a COCO "
     r'annotation file holds images, annotations, categories \(its keys: '
     r'\[\]\)'),
    ('{"annotations": [], "categories": [], "info": {}}',
     r"has no list of 'images': .*its keys: \['annotations', 'categories', "
     r"'info'\]"),
])
def test_bad_coco_annotations_are_named(tmp_path, text, message):
    (tmp_path / 'ann.json').write_text(text)
    with pytest.raises(GaPConfigError, match=message):
        check_data_paths(_cfg(tmp_path))


def test_good_coco_annotations_pass(tmp_path):
    (tmp_path / 'ann.json').write_text(json.dumps(GOOD))
    check_data_paths(_cfg(tmp_path))


def test_only_coco_datasets_are_parsed(tmp_path):
    # a ShapeNet split file is a JSON list, which is right for its dataset
    (tmp_path / 'split.json').write_text('["shape_data/0/a"]')
    check_data_paths(_cfg(tmp_path, 'split.json', 'ShapeNetPartDataset'))
    with pytest.raises(GaPConfigError, match='not a COCO JSON object'):
        check_coco_annotations(str(tmp_path / 'split.json'))


def test_large_files_are_checked_for_truncation_only(tmp_path, monkeypatch):
    import gap_mm.prerun_checks as checks
    monkeypatch.setattr(checks, 'COCO_PARSE_LIMIT', 10)
    (tmp_path / 'ann.json').write_text('{"images": []}')  # 14 bytes
    check_coco_annotations(str(tmp_path / 'ann.json'))
    (tmp_path / 'ann.json').write_text('{"images": [')
    with pytest.raises(GaPConfigError, match='is truncated'):
        check_coco_annotations(str(tmp_path / 'ann.json'))
