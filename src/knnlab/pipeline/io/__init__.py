"""Files the pipeline reads and writes: params.yaml, paths, atomic writes, file formats, the
stage records and the model file.
"""
