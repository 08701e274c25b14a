# Copyright (c) gap_mm contributors. All rights reserved.
"""Every URL scheme of MMEngine's ``CheckpointLoader``, read with
``weights_only=True``.

MMEngine 0.10.7 reads ``http(s)://``, ``torchvision://``, ``modelzoo://``,
``open-mmlab://``, ``openmmlab://`` and ``mmcls://`` checkpoints through
``torch.hub.load_state_dict_from_url``, which unpickles with
``weights_only=False``: a file served from a URL could run code. This
module registers, with ``CheckpointLoader.register_scheme(force=True)``,
a loader for each scheme that downloads the file into MMEngine's cache
(``torch.hub.get_dir()/checkpoints``, where MMEngine's own loader puts it)
and then reads it as a local file is read: ``torch.load(weights_only=True)``
with the allow-list of :mod:`gap_mm.utils.safe_load`. The local, ``s3://``
/ ``petrel://`` and ``pavi://`` schemes are registered the same way, with
``weights_only=True`` spelt out so that no environment variable turns it
off. :func:`register_safe_schemes` runs on ``import gap_mm``.
"""
import io
import os
import os.path as osp
import tempfile
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import (_get_mmengine_home,
                                        get_deprecated_model_names,
                                        get_external_models,
                                        get_mmcls_models,
                                        get_torchvision_models)

from gap_mm.utils.safe_load import allow_mmengine_checkpoint_globals


def read_weights_only(file: Any, map_location: Optional[str] = None) -> Any:
    """``torch.load(file, weights_only=True)`` with MMEngine's checkpoint
    objects allow-listed; ``file`` is a path or a binary stream."""
    allow_mmengine_checkpoint_globals()
    if isinstance(file, (str, os.PathLike)):
        file = osp.expanduser(os.fspath(file))
        if not osp.isfile(file):
            raise FileNotFoundError(f'checkpoint {file} does not exist')
    return torch.load(file, map_location=map_location, weights_only=True)


def cache_dir() -> str:
    """Where downloaded checkpoints are kept: ``<torch hub dir>/checkpoints``,
    the folder MMEngine's and torch's own URL loaders use."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def download(url: str, model_dir: Optional[str] = None) -> str:
    """Download ``url`` into the cache unless it is there; return the local
    path. Under torch.distributed, local rank 0 downloads while the other
    ranks wait, then they read the cached file."""
    model_dir = model_dir or cache_dir()
    name = osp.basename(urlparse(url).path)
    if not name:
        raise ValueError(f'the URL {url} names no file')
    path = osp.join(model_dir, name)
    rank, world_size = get_dist_info()
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    if local_rank == 0 and not osp.isfile(path):
        os.makedirs(model_dir, exist_ok=True)
        # a partial download must never be taken for the cached file
        fd, tmp = tempfile.mkstemp(dir=model_dir, suffix='.partial')
        os.close(fd)
        try:
            torch.hub.download_url_to_file(
                url, tmp, hash_prefix=None, progress=False)
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
    if world_size > 1:
        barrier()
    return path


def load_from_local(filename: str, map_location=None) -> Any:
    """A local checkpoint."""
    return read_weights_only(filename, map_location)


def load_from_http(filename: str, map_location=None, model_dir=None) -> Any:
    """A checkpoint at an ``http(s)://`` URL, downloaded, then read."""
    return read_weights_only(download(filename, model_dir), map_location)


def _named_url(table: Callable[[], Dict[str, str]], prefix: str,
               filename: str) -> str:
    """The URL that MMEngine's table of model names gives for the name
    after ``prefix``; a KeyError names the scheme and the unknown name."""
    name = filename[len(prefix):]
    urls = table()
    if name not in urls:
        raise KeyError(f'{prefix}{name}: no model of that name is known to '
                       f'MMEngine for {prefix} checkpoints')
    return urls[name]


def load_from_torchvision(filename: str, map_location=None) -> Any:
    """``torchvision://NAME`` (and the older ``modelzoo://NAME``)."""
    prefix = 'modelzoo://' if filename.startswith('modelzoo://') else \
        'torchvision://'
    url = _named_url(get_torchvision_models, prefix, filename)
    return load_from_http(url, map_location)


def load_from_openmmlab(filename: str, map_location=None) -> Any:
    """``open-mmlab://NAME`` / ``openmmlab://NAME``: a URL, or a file under
    MMEngine's home folder."""
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') else \
        'openmmlab://'
    name = filename[len(prefix):]
    name = get_deprecated_model_names().get(name, name)
    url = _named_url(get_external_models, prefix, prefix + name)
    if url.startswith(('http://', 'https://')):
        return load_from_http(url, map_location)
    return read_weights_only(osp.join(_get_mmengine_home(), url), map_location)


def load_from_mmcls(filename: str, map_location=None) -> Any:
    """``mmcls://NAME``: the backbone of an mmcls checkpoint."""
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint
    url = _named_url(get_mmcls_models, 'mmcls://', filename)
    return _process_mmcls_checkpoint(load_from_http(url, map_location))


def load_from_ceph(filename: str, map_location=None,
                   backend: str = 'petrel') -> Any:
    """``s3://`` and ``petrel://`` through MMEngine's file backend."""
    file_backend = get_file_backend(
        filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return read_weights_only(buffer, map_location)


def load_from_pavi(filename: str, map_location=None) -> Any:
    """``pavi://``: downloaded with pavi's model cloud, then read."""
    try:
        from pavi import modelcloud
    except ImportError as err:
        raise ImportError(
            'install pavi to load checkpoints from pavi://') from err
    model = modelcloud.get(filename[len('pavi://'):])
    with tempfile.TemporaryDirectory() as tmp_dir:
        path = osp.join(tmp_dir, model.name)
        model.download(path)
        return read_weights_only(path, map_location)


#: MMEngine 0.10.7's prefixes, each with the loader that replaces its own.
SAFE_SCHEMES = {
    '': load_from_local,
    ('http://', 'https://'): load_from_http,
    ('modelzoo://', 'torchvision://'): load_from_torchvision,
    ('open-mmlab://', 'openmmlab://'): load_from_openmmlab,
    'mmcls://': load_from_mmcls,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): load_from_ceph,
    'pavi://': load_from_pavi,
}


def register_safe_schemes() -> None:
    """Replace the loader of every scheme MMEngine registers with the
    weights-only one above. Idempotent."""
    for prefixes, loader in SAFE_SCHEMES.items():
        CheckpointLoader.register_scheme(prefixes, loader, force=True)


def unsafe_schemes() -> Dict[str, str]:
    """Prefixes of ``CheckpointLoader`` whose loader is not one of ours
    (``{prefix: loader name}``): a scheme another package registered after
    ``import gap_mm``, which could read without ``weights_only``."""
    ours = set(SAFE_SCHEMES.values())
    return {
        prefix: getattr(loader, '__qualname__', repr(loader))
        for prefix, loader in CheckpointLoader._schemes.items()
        if loader not in ours
    }
