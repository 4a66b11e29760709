"""Dataset cards, as the data package names them: the schema, parser and catalog live in
``workbench.store.dataset_cards`` (the store validates the cards of the dataset entries it
receives and sits below this package, so it cannot import them from here). This module
re-exports them under their old path; new code may import either."""
from ..store.catalog import ID_PATTERN
from ..store.dataset_cards import (
    SOURCE_KINDS,
    DatasetCard,
    DatasetCatalog,
    DatasetSource,
    builtin_cards_dir,
    parse_dataset_card,
    read_dataset_card,
)

__all__ = ["ID_PATTERN", "SOURCE_KINDS", "DatasetCard", "DatasetCatalog", "DatasetSource", "builtin_cards_dir",
           "parse_dataset_card", "read_dataset_card"]
