# Copyright (c) gap_mm contributors. All rights reserved.
"""The top-level ``gap_*`` config variables a sparsity hook reads at run
time (``--cfg-options gap_sparsity=0.9`` under any launcher)."""
import difflib
import logging
import os.path as osp
from typing import Dict, Iterable, List, Optional

from mmengine.config import Config
from mmengine.logging import print_log

from gap_mm.errors import GaPConfigError

#: Top-level config variables and the hook argument each one sets.
GAP_CFG_VARIABLES = {
    'gap_sparsity': 'sparsity',
    'gap_distribution': 'distribution',
    'gap_pattern': 'pattern',
}


def did_you_mean(key: str, valid: Iterable[str], prefix: str = '') -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" Did you mean '{prefix}{close[0]}'?" if close else ''


def check_gap_variable_keys(changed: Iterable[str]) -> None:
    """Reject top-level ``gap_*`` keys set after the config file was read
    that no hook reads at run time.

    Raises:
        GaPConfigError: For a typo such as ``gap_sparsty``, or a config
            variable such as ``gap_period`` that the file already copied
            where it is used, so that overriding it would silently change
            nothing.
    """
    unknown = sorted(
        k for k in changed if k.startswith('gap_') and '.' not in k
        and k not in GAP_CFG_VARIABLES)
    if unknown:
        key = unknown[0]
        hint = did_you_mean(key, GAP_CFG_VARIABLES)
        raise GaPConfigError(
            f'--cfg-options {key}: only {", ".join(GAP_CFG_VARIABLES)} '
            f'reach the sparsity hooks at run time.{hint} The config file '
            f'copies its other variables where they are used when it is '
            f'read; set those keys directly, e.g. '
            f'custom_hooks.0.schedule.period=100.')


def changed_top_level_keys(cfg: Config,
                           work_dir: Optional[str] = None
                           ) -> Optional[List[str]]:
    """Top-level keys whose value differs from the config file's (set by
    ``--cfg-options`` under any launcher).

    Returns None when that cannot be told: ``cfg`` was not read from a file,
    or the file lies in ``work_dir``, where MMEngine's Runner dumps the
    merged config under the file's own name (so it may hold the merged
    values by now).
    """
    filename = getattr(cfg, 'filename', None)
    if not filename or not osp.isfile(filename):
        return None
    if work_dir and osp.isdir(work_dir) and osp.samefile(
            osp.dirname(osp.abspath(filename)), work_dir):
        return None
    original = Config.fromfile(filename)
    return [
        k for k in cfg.keys() if k not in original or original[k] != cfg[k]
    ]


def resolve_gap_variables(cfg: Config,
                          given: Dict[str, object],
                          changed: Optional[Iterable[str]] = None,
                          hook: str = 'GaPHook',
                          work_dir: Optional[str] = None) -> Dict[str, object]:
    """The values a sparsity hook takes from the top-level ``gap_*``
    variables of its config.

    A hook option left unset (None) takes the variable's value, so
    ``--cfg-options gap_sparsity=0.9`` reaches it under any launcher:
    gap_mm's ``tools/train.py``, mmdet's, ``mim train``. An option the hook
    was given explicitly wins. A variable changed on the command line that
    cannot reach an explicit option is an error, never silently ignored;
    where it cannot be told whether the variable was changed, a differing
    explicit option is used with a warning.

    Args:
        cfg (Config): The merged config the Runner was built from.
        given (dict): The hook's own values by option (None = unset), e.g.
            ``dict(sparsity=None, distribution='erk', pattern=None)``.
        changed (Iterable[str], optional): Top-level keys set after the
            file was read. None finds them by reading the file again (see
            :func:`changed_top_level_keys`).
        hook (str): The hook's name, for messages.
        work_dir (str, optional): The run's work dir, see
            :func:`changed_top_level_keys`.

    Returns:
        dict: The options that were None and have a variable, with its
        value.

    Raises:
        GaPConfigError: For a changed ``gap_*`` key no hook reads (see
            :func:`check_gap_variable_keys`), or a changed variable whose
            hook option is set explicitly to another value.
    """
    if changed is None:
        changed = changed_top_level_keys(cfg, work_dir)
    known = changed is not None
    changed = list(changed or [])
    check_gap_variable_keys(changed)
    resolved: Dict[str, object] = {}
    for var, option in GAP_CFG_VARIABLES.items():
        if option not in given or var not in cfg:
            continue
        value = cfg[var]
        if given[option] is None:
            resolved[option] = value
        elif given[option] != value and (var in changed or not known):
            if known:
                raise GaPConfigError(
                    f'{var}={value!r} was set after the config was read, '
                    f'but {hook} is given {option}={given[option]!r} '
                    f'explicitly, so the variable cannot reach it. Set the '
                    f'hook option instead (--cfg-options custom_hooks.'
                    f'<index>.{option}=...), or leave {option} out of the '
                    f'hook in the config so that it reads {var}.')
            print_log(
                f'{hook} uses its explicit {option}={given[option]!r}, not '
                f'the config\'s {var}={value!r}; to use {var}, leave '
                f'{option} out of the hook',
                logger='current',
                level=logging.WARNING)
    return resolved
