"""Output heads: distribution parameters from features, negative log-likelihoods and samples."""
