# Copyright (c) gap_mm contributors. All rights reserved.
"""Checkpoints from URLs run no code: a pickle payload served over http on
127.0.0.1 is refused by every path that reads a checkpoint (the API,
MMEngine's ``CheckpointLoader`` and ``load_checkpoint`` as ``load_from``
and ``init_cfg=dict(type='Pretrained')`` use them, ``torchvision://`` and
``open-mmlab://`` names, ``tools/test.py``, ``tools/train.py`` with
``load_from``, the converters), and a clean checkpoint loads from the
same server through MMEngine's cache."""
import functools
import http.server
import os
import os.path as osp
import sys
import threading

import pytest
import torch
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import load_checkpoint as mm_load_checkpoint

import gap_mm  # noqa: F401  (registers the schemes)
from gap_mm.checkpoint import CheckpointReadError, load_checkpoint, schemes
from gap_mm.testing.e2e import free_port, run_tool

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOY_DIR = osp.join(REPO, 'tests', 'test_tools', 'toy_cfg')
TOY_CFG = osp.join(TOY_DIR, 'toy_config.py')


class _Payload:
    """Creates the file ``marker`` when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local http server over ``tmp_path/www`` holding ``evil.pth`` (a
    state_dict with a payload) and ``good.pth``; the torch hub cache in
    ``tmp_path/torch_home``. Yields ``(base_url, marker, good_state)``."""
    www = tmp_path / 'www'
    www.mkdir()
    marker = str(tmp_path / 'code_ran')
    torch.save({'state_dict': {'w': torch.ones(2)}, 'x': _Payload(marker)},
               str(www / 'evil.pth'))
    good = {'w': torch.arange(4.)}
    torch.save({'state_dict': good, 'meta': {'iter': 3}},
               str(www / 'good.pth'))
    assert not osp.exists(marker)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', free_port()),
                                            handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{httpd.server_address[1]}', marker, good
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_every_mmengine_scheme_is_ours():
    assert schemes.unsafe_schemes() == {}
    for prefix in ('', 'http://', 'https://', 'torchvision://',
                   'modelzoo://', 'open-mmlab://', 'openmmlab://', 'mmcls://',
                   'pavi://'):
        loader = CheckpointLoader._get_checkpoint_loader(prefix + 'x/y.pth')
        assert loader in schemes.SAFE_SCHEMES.values(), prefix
    assert CheckpointLoader._get_checkpoint_loader(
        's3://bucket/y.pth') is schemes.load_from_ceph


def test_api_refuses_payload_over_http(server):
    base, marker, _ = server
    with pytest.raises(CheckpointReadError, match='allow-list'):
        load_checkpoint(f'{base}/evil.pth')
    assert not osp.exists(marker)


@pytest.mark.parametrize('how', ['CheckpointLoader', 'load_from'])
def test_mmengine_paths_refuse_payload_over_http(server, how):
    """``CheckpointLoader.load_checkpoint`` is what ``Runner.load_checkpoint``
    (``load_from``, ``tools/test.py``) and ``init_cfg`` Pretrained call."""
    base, marker, _ = server
    with pytest.raises(Exception, match='[Ww]eights only load failed'):
        if how == 'CheckpointLoader':
            CheckpointLoader.load_checkpoint(
                f'{base}/evil.pth', logger='silent')
        else:
            mm_load_checkpoint(
                torch.nn.Linear(2, 2), f'{base}/evil.pth', logger='silent')
    assert not osp.exists(marker)


def test_pretrained_init_cfg_refuses_payload_over_http(server):
    from mmengine.model import BaseModule
    base, marker, _ = server

    class Net(BaseModule):

        def __init__(self):
            super().__init__(init_cfg=dict(
                type='Pretrained', checkpoint=f'{base}/evil.pth'))
            self.w = torch.nn.Linear(2, 2)

    with pytest.raises(Exception, match='[Ww]eights only load failed'):
        Net().init_weights()
    assert not osp.exists(marker)


@pytest.mark.parametrize('scheme, table', [
    ('torchvision://', 'get_torchvision_models'),
    ('open-mmlab://', 'get_external_models'),
    ('mmcls://', 'get_mmcls_models'),
])
def test_named_schemes_refuse_payload(server, monkeypatch, scheme, table):
    base, marker, _ = server
    monkeypatch.setattr(schemes, table,
                        lambda: {'evil_net': f'{base}/evil.pth'})
    with pytest.raises(Exception, match='[Ww]eights only load failed'):
        CheckpointLoader.load_checkpoint(f'{scheme}evil_net', logger='silent')
    assert not osp.exists(marker)
    with pytest.raises(KeyError, match=f'{scheme}no_such_net'):
        CheckpointLoader.load_checkpoint(f'{scheme}no_such_net',
                                         logger='silent')


def test_clean_checkpoint_loads_and_is_cached(server, tmp_path):
    base, _, good = server
    ckpt = load_checkpoint(f'{base}/good.pth')
    torch.testing.assert_close(ckpt['state_dict']['w'], good['w'])
    assert ckpt['meta'] == {'iter': 3}
    cached = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'good.pth'
    assert cached.is_file()
    assert [p for p in os.listdir(cached.parent) if p.endswith('.partial')
            ] == []
    # read from the cache: the server no longer needs to hold it
    os.remove(str(tmp_path / 'www' / 'good.pth'))
    again = load_checkpoint(f'{base}/good.pth')
    torch.testing.assert_close(again['state_dict']['w'], good['w'])


def test_missing_url_leaves_no_cached_file(server, tmp_path):
    base, _, _ = server
    with pytest.raises(CheckpointReadError):
        load_checkpoint(f'{base}/missing.pth')
    folder = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    assert not folder.exists() or os.listdir(folder) == []


def test_foreign_scheme_is_refused(monkeypatch):

    def reckless(filename, map_location=None):
        return torch.load(filename, weights_only=False)

    monkeypatch.setattr(CheckpointLoader, '_schemes',
                        dict(CheckpointLoader._schemes))
    CheckpointLoader.register_scheme('reckless://', reckless)
    assert schemes.unsafe_schemes() == {'reckless://': 'test_foreign_scheme_'
                                        'is_refused.<locals>.reckless'}
    with pytest.raises(CheckpointReadError, match='not by a weights-only'):
        load_checkpoint('reckless://x.pth')


def _tool(server, args, tmp_path):
    base, marker, _ = server
    proc = run_tool([sys.executable, *args],
                    str(tmp_path), [REPO, TOY_DIR],
                    check=False,
                    timeout=120,
                    TORCH_HOME=str(tmp_path / 'torch_home'))
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert not osp.exists(marker), proc.stdout + proc.stderr
    return proc


@pytest.mark.parametrize('tool', ['test', 'train', 'export'])
def test_tools_refuse_payload_over_http(server, tmp_path, tool):
    url = f'{server[0]}/evil.pth'
    if tool == 'test':
        args = [osp.join(REPO, 'tools', 'test.py'), TOY_CFG, url,
                '--work-dir', str(tmp_path / 'w')]
    elif tool == 'train':
        args = [osp.join(REPO, 'tools', 'train.py'), TOY_CFG,
                '--work-dir', str(tmp_path / 'w'),
                '--cfg-options', f'load_from={url}']
    else:
        args = [osp.join(REPO, 'tools', 'model_converters',
                         'export_sparse.py'), url,
                str(tmp_path / 'out.safetensors')]
    proc = _tool(server, args, tmp_path)
    assert 'eights only load failed' in proc.stderr or \
        'allow-list' in proc.stderr, proc.stderr[-2000:]
