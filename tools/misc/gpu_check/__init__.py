# Copyright (c) gap_mm contributors. All rights reserved.
"""The checks of the GPU check; ``tools/misc/device_check.py`` runs them
(docs/en/advanced_guides/gpu_check.md).

* :mod:`.common`: verdicts, JSON entries, timings, child processes;
* :mod:`.engine`: masks, prune event, masking cost, AMP steps;
* :mod:`.mmcv_checks`: the mmcv build, point operators, demo detector;
* :mod:`.model`: a RetinaNet R50-FPN in plain torch.
"""
