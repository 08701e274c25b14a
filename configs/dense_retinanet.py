# Dense baseline for configs/gap_retinanet.py: the same model, data and
# 36-epoch schedule, without GaP (it inherits that config so the two can
# never drift apart, and switches GaP off).
_base_ = './gap_retinanet.py'
custom_imports = dict(imports=[], allow_failed_imports=False)
optim_wrapper = dict(type='OptimWrapper')
custom_hooks = []
