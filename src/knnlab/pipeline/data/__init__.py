"""Datasets by source (embedded scikit-learn sets, CSV and Parquet tables, OpenML,
Fashion-MNIST's IDX files), the checks every source passes, and the split."""
