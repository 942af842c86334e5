"""The example arblocks plugin: a causal channel gate."""
