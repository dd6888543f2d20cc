"""Information extractors f_Y (paper §3.2, appendix A.1): architectures, training, registry, Table 1."""

from .architectures import ExtractorConfig, build_extractor, count_parameters, forward_flops
from .accuracy import ExtractorScore, SplitData, binary_accuracy, extractor_logits, load_concept_split, load_split, test_extractors, topk_accuracy
from .registry import ExtractorInfo, ensure_bundled_extractors, export_bundled, get_extractor, list_extractors, load_extractor, register_extractor
from .training import TrainConfig, TrainResult, default_configs, train_extractor

__all__ = [
    "ExtractorConfig", "build_extractor", "count_parameters", "forward_flops",
    "ExtractorScore", "SplitData", "binary_accuracy", "extractor_logits", "load_concept_split", "load_split", "test_extractors",
    "topk_accuracy",
    "ExtractorInfo", "ensure_bundled_extractors", "export_bundled", "get_extractor", "list_extractors",
    "load_extractor", "register_extractor",
    "TrainConfig", "TrainResult", "default_configs", "train_extractor",
]
