"""Knowledge graphs: the typed fact table and loaders for the five RuleQA source KGs."""

from rulerag.kg.facts import FactTable, KGDataset, date_to_day, day_to_date
from rulerag.kg.loaders import (
    DATASETS,
    KGFormatError,
    default_data_root,
    entity_name_coverage,
    load_facts_file,
    load_kg,
)

__all__ = [
    "DATASETS",
    "FactTable",
    "KGDataset",
    "KGFormatError",
    "date_to_day",
    "day_to_date",
    "default_data_root",
    "entity_name_coverage",
    "load_facts_file",
    "load_kg",
]
