"""The rule-based receptionist's Portuguese understanding: dates and times, yes/no, numbered choices."""

from conversations.nlu.answers import parse_choice, parse_yes_no
from conversations.nlu.text import normalize
from conversations.nlu.when import When, parse_when

__all__ = ["When", "normalize", "parse_choice", "parse_when", "parse_yes_no"]
