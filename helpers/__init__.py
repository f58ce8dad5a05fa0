"""image-repair-and-restoration: DnCNN -> UNet -> EDSR -> unsharp mask, 640x360 -> 1280x720.

One concern per module, data flowing one way (files -> ``io``/``data`` -> tensors -> models -> tensors
-> ``io`` -> files):

- networks and their maths: ``models`` (DnCNN, UNet, EDSR, UnsharpMask), ``losses``, ``metrics``,
  ``degrade`` (synthetic noise, blur, downscaling), ``checks`` (input validation);
- files: ``io`` (images and videos <-> arrays <-> tensors), ``safe_writes`` (atomic writes, locks), ``checkpoint`` (save, safe load, weights
  with what their file records), ``cache`` (decoded-frame cache), ``archives`` (checked dataset archives),
  ``import_weights`` (published weights as our networks);
- data and training: ``data/`` (dataset readers, sources, the sample set, one file per stage's datasets),
  ``recipes`` (a config dict -> a stage's datasets and network), ``training/`` (``fit``, resume rules,
  validation, reproducibility, DDP), ``cascade`` (end-to-end fine-tuning of the three networks);
- restoring: ``gates`` (how much of each correction a frame gets), ``inference`` (devices, precision),
  ``pipeline`` (``Restorer``: the cascade on any size, tiled), ``restore`` (files, folders, videos),
  ``calibrate`` (a UNet's deblur-gate ramp);
- measuring and showing: ``evaluate`` (ablation tables), ``report`` (tables and grids to files), ``viz``
  (plots), ``profiling`` (FLOPs, timing, memory, Colab GPU estimates);
- notebooks and Colab: ``colab`` (Colab and Drive glue), ``notebooks`` (each notebook's data and runs);
- ``commands/``: ``python -m helpers COMMAND``, one module per command (the only code that reads argparse).
"""

__version__ = "0.1.0"
