# Copyright (c) gap_mm contributors. All rights reserved.
from typing import Optional

from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from gap_mm.sparsity import MagnitudeSparsifier


class GaPMaskingMixin:
    """Masks gradients before and weights after every optimizer step.

    The masking lives here, once, for both :class:`GaPOptimWrapper` and
    :class:`GaPAmpOptimWrapper`, so that the CPU tests of the plain wrapper
    cover the AMP one too. Only :meth:`step` is overridden; the
    ``update_params`` / gradient-accumulation contract of
    :class:`~mmengine.optim.OptimWrapper` is untouched, so with
    ``accumulative_counts=N`` the gradients summed over N backward passes are
    masked once, right before the real step.

    Gradients are masked *before* the step so that no momentum or Adam moment
    builds up at pruned positions (and gradient clipping sees the masked
    norm); weights are re-masked *after* it because weight decay or an
    optimizer's eps can move a zero. Under AMP the fp32 master weights, which
    are the module's parameters, are the ones masked. Dense layers (the
    partition GaP is growing) hold no mask and cost nothing.

    The sparsifier is attached by :class:`~gap_mm.engine.GaPHook`; until
    then the wrapper behaves like its base class.
    """

    _gap_sparsifier: Optional[MagnitudeSparsifier] = None

    def attach_sparsifier(self, sparsifier: MagnitudeSparsifier) -> None:
        """Mask with ``sparsifier`` from the next step on."""
        self._gap_sparsifier = sparsifier

    @property
    def sparsifier(self) -> Optional[MagnitudeSparsifier]:
        return self._gap_sparsifier

    def step(self, **kwargs) -> None:
        sparsifier = self._gap_sparsifier
        if sparsifier is not None:
            sparsifier.mask_grads_()
        super().step(**kwargs)
        if sparsifier is not None:
            sparsifier.apply_masks_()


@OPTIM_WRAPPERS.register_module()
class GaPOptimWrapper(GaPMaskingMixin, OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` that keeps GaP masks exact.

    Examples:
        >>> optim_wrapper = dict(
        >>>     type='GaPOptimWrapper',
        >>>     optimizer=dict(type='SGD', lr=0.02, momentum=0.9,
        >>>                    weight_decay=1e-4))
    """


@OPTIM_WRAPPERS.register_module()
class GaPAmpOptimWrapper(GaPMaskingMixin, AmpOptimWrapper):
    """:class:`~mmengine.optim.AmpOptimWrapper` that keeps GaP masks exact.

    Masked gradients are zeroed while still scaled (zero stays zero), and
    the loss scaler may skip a step on overflow; the weights are re-masked
    either way. ``tools/train.py --amp`` switches ``GaPOptimWrapper`` to
    this class. mmengine requires a CUDA (or NPU/MLU) device for AMP.
    """
