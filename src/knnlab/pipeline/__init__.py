"""What the DVC pipeline needs around the core: params, paths, files, datasets, the model
file, figures, the report and ``knnlab predict``. Imports the core, never ``knnlab.tracking``
or ``knnlab.stages``."""
