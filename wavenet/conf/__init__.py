# Hydra's config groups, shipped in the package (searched as pkg://wavenet.conf).
