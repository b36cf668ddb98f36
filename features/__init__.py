"""Features: from raw CX tables to one row per customer as of a cutoff.

- `contract`: table names, columns, allowed values, the validated `Tables` bundle.
- `sources`: read a data folder or SQL database; write tables and frames (the I/O edge).
- `partitioned`: folders partitioned by a hash of `customer_id`, with a manifest.
- `distributed`: validation, features and labels per partition on Dask, gathered exactly.
- `validate`: raw tables -> clean `Tables` + quarantined rows with reasons + reconciled counts.
- `mapping`: import mappings (YAML) that turn a foreign export into contract tables.
- `synthetic`: the synthetic CX world generator.
- `snapshot`: the population at a cutoff and the NumPy views feature families share.
- `families/`: one module per feature family (value, journey, feedback, sentiment, static).
- `build`: `build_features(tables, as_of, settings)`; `labels`: `build_labels(tables, as_of, horizon)`.
- `cli`: `retain generate | validate | import | partition | features`.
"""
