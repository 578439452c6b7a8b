# Hydra's config groups: the package wavenet.conf (pyproject.toml maps it here; Hydra searches
# pkg://wavenet.conf), in the wheel as wavenet/conf.
