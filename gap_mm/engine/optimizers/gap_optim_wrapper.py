# Copyright (c) gap_mm contributors. All rights reserved.
from typing import List, Optional

from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from gap_mm.sparsity import Sparsifier


class StepStage:
    """A part of a sparse-training method that runs inside every optimizer
    step, at the two points the masking leaves open.

    Subclass and override either method; register an instance with
    :meth:`GaPMaskingMixin.add_stage` (a hook does it in ``before_train``).
    ``iteration`` is the 0-based training iteration whose gradients are
    being applied (``runner.iter`` during ``after_train_iter``); with
    ``accumulative_counts=N`` the stages run once per real step, after the
    N-th backward.

    Examples:
        >>> class L2Penalty(StepStage):
        ...     def __init__(self, params, coeff):
        ...         self.params, self.coeff = params, coeff
        ...     def before_mask(self, iteration):
        ...         for p in self.params:
        ...             p.grad.add_(p.detach(), alpha=self.coeff)
    """

    def before_mask(self, iteration: int) -> None:
        """The gradients are dense (what backward computed, unmasked, before
        clipping): read them (RigL's grow signal) or add to them (GReg's
        penalty)."""

    def after_step(self, iteration: int) -> None:
        """The optimizer has stepped and the masks are re-applied."""


class GaPMaskingMixin:
    """Masks gradients before and weights after every optimizer step, with a
    pipeline that methods join.

    One optimizer step is::

        stage.before_mask(i) for every stage   # dense gradients
        sparsifier.mask_grads_()               # no momentum at pruned ones
        super().step()                         # clipping, optimizer.step
        sparsifier.apply_masks_()              # decay / eps cannot move a 0
        stage.after_step(i) for every stage

    The masking lives here, once, for both :class:`GaPOptimWrapper` and
    :class:`GaPAmpOptimWrapper`, so that the CPU tests of the plain wrapper
    cover the AMP one too. Only :meth:`step` is overridden; the
    ``update_params`` / gradient-accumulation contract of
    :class:`~mmengine.optim.OptimWrapper` is untouched, so with
    ``accumulative_counts=N`` the gradients summed over N backward passes
    are masked once, right before the real step.

    Gradients are masked *before* the step so that no momentum or Adam
    moment builds up at pruned positions (and gradient clipping sees the
    masked norm); weights are re-masked *after* it because weight decay or
    an optimizer's eps can move a zero. Under AMP the fp32 master weights,
    which are the module's parameters, are the ones masked, and the
    gradients the stages see are still scaled by the loss scale. Dense
    layers (a partition GaP is growing) hold no mask and cost nothing.

    The sparsifier and the stages are attached by the sparsity hooks; until
    then the wrapper behaves like its base class.
    """

    _gap_sparsifier: Optional[Sparsifier] = None

    def attach_sparsifier(self, sparsifier: Sparsifier) -> None:
        """Mask with ``sparsifier`` from the next step on."""
        self._gap_sparsifier = sparsifier

    @property
    def sparsifier(self) -> Optional[Sparsifier]:
        return self._gap_sparsifier

    @property
    def stages(self) -> List[StepStage]:
        """The stages, in the order they run."""
        if '_gap_stages' not in self.__dict__:
            self._gap_stages: List[StepStage] = []
        return self._gap_stages

    def add_stage(self, stage: StepStage) -> None:
        """Run ``stage`` in every step from now on, after the stages added
        before it."""
        if not isinstance(stage, StepStage):
            raise TypeError(f'a step stage must be a StepStage, but got '
                            f'{type(stage).__name__}')
        if stage not in self.stages:
            self.stages.append(stage)

    def grad_scale(self) -> float:
        """The factor the gradients a stage sees are multiplied by: 1 here,
        the loss scale under AMP. A stage that adds to the gradients (a
        penalty) multiplies its term by it."""
        return 1.0

    def step(self, **kwargs) -> None:
        iteration = self._inner_count - 1
        stages = self.stages
        for stage in stages:
            stage.before_mask(iteration)
        sparsifier = self._gap_sparsifier
        if sparsifier is not None:
            sparsifier.mask_grads_()
        super().step(**kwargs)
        if sparsifier is not None:
            sparsifier.apply_masks_()
        for stage in stages:
            stage.after_step(iteration)


@OPTIM_WRAPPERS.register_module()
class GaPOptimWrapper(GaPMaskingMixin, OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` that keeps sparse masks exact
    (for GaPHook and every other sparsity hook of gap_mm).

    Examples:
        >>> optim_wrapper = dict(
        >>>     type='GaPOptimWrapper',
        >>>     optimizer=dict(type='SGD', lr=0.02, momentum=0.9,
        >>>                    weight_decay=1e-4))
    """


@OPTIM_WRAPPERS.register_module()
class GaPAmpOptimWrapper(GaPMaskingMixin, AmpOptimWrapper):
    """:class:`~mmengine.optim.AmpOptimWrapper` that keeps sparse masks
    exact.

    Masked gradients are zeroed while still scaled (zero stays zero), and
    the loss scaler may skip a step on overflow; the weights are re-masked
    either way. ``tools/train.py --amp`` switches ``GaPOptimWrapper`` to
    this class. mmengine requires a CUDA (or NPU/MLU) device for AMP.
    """

    def grad_scale(self) -> float:
        return float(self.loss_scaler.get_scale()) \
            if self.loss_scaler.is_enabled() else 1.0
