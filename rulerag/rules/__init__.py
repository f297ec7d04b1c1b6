"""Rules: the :class:`Rule` model, parsing/loading/saving, and the :class:`RuleStore` that matches
rules to questions.

Example:
    >>> from rulerag.rules import RuleStore, parse_rule
    >>> rule = parse_rule("[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]")
    >>> RuleStore([rule]).match_relation("citizen_of")[0].rule.datalog
    'citizen_of(X,Y) <- born_in(X,Y)'
"""

from rulerag.rules.model import Atom, Rule
from rulerag.rules.parse import load_rules, parse_rule, save_rules
from rulerag.rules.store import RuleMatch, RuleStore

__all__ = ["Atom", "Rule", "RuleMatch", "RuleStore", "parse_rule", "load_rules", "save_rules"]
