# Copyright (c) gap_mm contributors. All rights reserved.
"""Build what a Runner would build from a sparse-training config, without
data.

Full configs need their datasets (COCO, ShapeNet) and many GPUs to train;
this builds their model, optimizer wrapper and GaPHook exactly as the Runner
would and runs the hook's set-up, so a test can then train one step on small
inputs and check the masks.
"""
from types import SimpleNamespace
from typing import Tuple

from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import HOOKS, MODELS, DefaultScope

from gap_mm.engine import BaseSparsityHook, GaPOptimWrapper
from gap_mm.prerun_checks import sparsity_hooks


def build_gap_training(
        cfg: Config,
        name: str,
        iters_per_epoch: int = 100
) -> Tuple[object, object, BaseSparsityHook, object]:
    """Model, GaP optimizer wrapper and sparsity hook of ``cfg``, after the
    hook's ``before_run`` and ``before_train``.

    Args:
        cfg (Config): A config with a sparsity hook (GaPHook, RigLHook, ...)
            among its custom hooks (the first one is used; mmdet's own
            hooks before it, as SSD's, are left unbuilt).
        name (str): A unique name for the message hub.
        iters_per_epoch (int): The stand-in's iterations per epoch, for an
            epoch-based run (its ``max_iters``). Defaults to 100.

    Returns:
        tuple: ``(model, wrapper, hook, runner)``; ``runner`` is the minimal
        stand-in the hook reads (cfg, model, optim_wrapper, hooks, iter,
        epoch, max_iters / max_epochs, seed, message_hub).
    """
    # The config's scope, for this build only: a scope left behind would
    # send later tests' builds to the wrong registry.
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmengine')):
        model = MODELS.build(cfg.model)
        model.init_weights()
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        hooks = sparsity_hooks(cfg)
        assert hooks, 'no sparsity hook in custom_hooks'
        hook = HOOKS.build(hooks[0])
    assert isinstance(wrapper, GaPOptimWrapper), type(wrapper)
    assert isinstance(hook, BaseSparsityHook), type(hook)
    by_epoch = 'max_epochs' in cfg.train_cfg
    runner = SimpleNamespace(
        cfg=cfg,
        model=model,
        optim_wrapper=wrapper,
        hooks=[hook],
        train_loop=None,
        seed=(cfg.get('randomness') or {}).get('seed') or 0,
        iter=0,
        epoch=0,
        max_epochs=cfg.train_cfg.get('max_epochs'),
        max_iters=cfg.train_cfg.get('max_epochs') * iters_per_epoch
        if by_epoch else cfg.train_cfg.get('max_iters'),
        message_hub=MessageHub.get_instance(f'gap_build_{name}'))
    hook.before_run(runner)
    hook.before_train(runner)
    return model, wrapper, hook, runner
