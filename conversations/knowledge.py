"""The clinic's FAQ as both receptionist engines read it: PostgreSQL full-text search in Portuguese.

Entries are matched on Portuguese stems with accents removed (the `portuguese_unaccent` configuration of
migration 0008), so "estacionar" finds "estacionamento" and "cartao" finds "cartão". A patient's message is a
sentence, not a query: any of its words may match, and entries that match more of them, or match them in the
question and keywords rather than only in the answer, rank first. Typos beyond accents are not forgiven.
"""

from __future__ import annotations

import re
import unicodedata

from django.contrib.postgres.search import SearchQuery, SearchRank

from cecilia.models import Clinic
from conversations.models import FAQ_SEARCH_CONFIG, FAQ_SEARCH_VECTOR, FaqEntry

# A message longer than this many distinct words is cut: enough for any question, bounded for the database.
_MAX_TERMS = 24
# PostgreSQL's Portuguese stop words that carry accents stop being stop words once unaccented ("nao", "voce"),
# plus chat filler that would otherwise match any entry whose answer happens to use it.
_STOP_WORDS = frozenset(
    {
        "nao",
        "ja",
        "tambem",
        "so",
        "ate",
        "voce",
        "voces",
        "vc",
        "vcs",
        "nos",
        "esta",
        "estao",
        "ha",
        "sao",
        "sera",
        "serao",
        "tem",
        "oi",
        "ola",
        "bom",
        "boa",
        "obrigado",
        "obrigada",
        "favor",
        "pf",
        "pfv",
        "queria",
        "gostaria",
        "quero",
        "saber",
        "tudo",
        # Answers to a question, not questions: "sim, quero" must not find an answer that starts with "Sim!".
        "sim",
        "ok",
        "pode",
        "isso",
        "claro",
        "certo",
        "beleza",
        "blz",
        "ta",
    }
)
_WORD = re.compile(r"[a-z0-9]+")


def _plain(text: str) -> str:
    """Lower case without accents ("Cartão" → "cartao"), as the search configuration stores words."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def faq_terms(text: str) -> list[str]:
    """The words of a patient's message worth searching for, unaccented, in order, each once."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(_plain(text)):
        if len(word) >= 2 and word not in _STOP_WORDS:
            seen.setdefault(word, None)
    return list(seen)[:_MAX_TERMS]


def faq_search(*, clinic: Clinic, text: str, limit: int = 3) -> list[FaqEntry]:
    """The clinic's active FAQ entries that best answer `text`, best first; [] when nothing matches.

    Only `clinic`'s entries are ever returned. Words are ORed, so one matching word is enough to appear ("marcar
    consulta" finds "Como cancelar uma consulta?"): a caller that answers with the first entry unasked should
    check it fits. Each entry carries its `rank` (PostgreSQL's ts_rank over question and keywords weighted A,
    answer B), which orders them.
    """
    terms = faq_terms(text)
    if not terms or limit <= 0:
        return []
    # Terms are [a-z0-9]+ only, so quoting them is enough to make a safe raw tsquery; to_tsquery stems them and
    # drops the remaining stop words itself.
    query = SearchQuery(" | ".join(f"'{term}'" for term in terms), search_type="raw", config=FAQ_SEARCH_CONFIG)
    entries = (
        FaqEntry.objects.filter(clinic=clinic, active=True)
        .annotate(search=FAQ_SEARCH_VECTOR)
        .filter(search=query)
        .annotate(rank=SearchRank(FAQ_SEARCH_VECTOR, query))
        .order_by("-rank", "id")
    )
    return list(entries[:limit])
