"""data_prep: videos and face-crop sets → sampled frames → aligned faces → TFRecord shards.

Pipeline modules, in order: :mod:`data_prep.manifests` (what to read),
:mod:`data_prep.splits` (identity-safe splits), :mod:`data_prep.sampling` (which frames),
:mod:`data_prep.faces` (detect, align, track), :mod:`data_prep.shard_writer` (write shards),
:mod:`data_prep.prep` (the resumable, parallel ``dfd prep`` run).
"""
