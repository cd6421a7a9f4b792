"""Training data: loaders for tang2018, JustLMD, AIST++ and CMU salsa (BVH), a cached corpus, random windows.

Every loader returns DanceSequence objects at layout.MODEL_FPS, Y up, feet on the floor;
load_corpus packs them into model channels with music features and caches the result.
Not needed at inference.
"""
from .aistpp import load_aistpp
from .cache import (CACHE_VERSION, DEFAULT_SOURCES, REPOSITORY, REPOSITORY_CACHE, SHARED_DATA, Corpus, CorpusItem, cache_beside, existing_sources,
                    default_validation_names, load_corpus)
from .cmu_salsa import load_cmu_salsa
from .justlmd import load_justlmd
from .sequence import DanceSequence
from .tang2018 import load_tang2018
from .windows import WindowDataset

__all__ = [
    "CACHE_VERSION", "DEFAULT_SOURCES", "SHARED_DATA", "Corpus", "CorpusItem", "DanceSequence", "WindowDataset",
    "default_validation_names", "existing_sources", "load_aistpp", "load_cmu_salsa", "load_corpus", "load_justlmd", "load_tang2018",
]
