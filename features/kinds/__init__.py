"""One file per modality kind: its schema fields, how it is fitted, how Arrow becomes tensors;
and the registry of which class reads which kind."""

from deepsets.features.kinds.registry import feature_class, feature_kinds, register_feature_kind

__all__ = ["feature_class", "feature_kinds", "register_feature_kind"]
