"""image-repair-and-restoration: DnCNN -> UNet -> EDSR -> unsharp mask, 640x360 -> 1280x720.

Modules, one concern each: ``models`` (networks), ``metrics`` (PSNR/SSIM/MSE),
``losses`` (training objectives), ``io`` (files <-> arrays <-> tensors),
``degrade`` (synthetic noise/blur/downscaling), ``data`` (datasets, sample set,
patch cache), ``train`` (the trainer), ``pipeline`` (the restoration cascade),
``evaluate`` (ablation tables), ``viz`` (plots), ``colab`` (Colab/Drive glue),
``benchmark`` (FLOP counts and timing) and ``cli`` (``python -m helpers``).
"""

__version__ = "0.1.0"
